"""The ``tinyvae`` command: ``tinyvae ...`` (the console script, see setup.py) and ``python -m tinyvae ...``.

Both run :func:`main`, which first lets tinyvae/blas_tuning.py choose OpenBLAS's kernels for this CPU, and
only then imports the command line (tinyvae/cli.py), which imports NumPy: OpenBLAS reads the choice once,
when NumPy loads it. Nothing before that point loads NumPy: ``import tinyvae`` imports nothing heavy, and
blas_tuning.py only the standard library.
"""

import sys

from tinyvae import blas_tuning


def main(argv=None):
    blas_tuning.apply()
    from tinyvae import cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
