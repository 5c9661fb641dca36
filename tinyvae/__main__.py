"""``python -m tinyvae``: the same command line as the ``tinyvae`` console script."""

import sys

from tinyvae.cli import main

sys.exit(main())
