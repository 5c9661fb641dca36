"""Which version of a kernel runs: the one rule every kernel's entry point follows.

Each kernel file keeps a table ``{"numpy": f, "numba": f, "cupy": f}`` of its versions, and its entry point
asks :func:`pick_version` which one to call:

* CuPy arrays go to the CuPy version (the data is on the GPU; nothing else could run on it);
* arrays of the test suite's simulated device (``tinyvae.backend.simulated_device``) go to the NumPy
  version, which is written against ``array_module(x)`` and so runs on them unchanged;
* NumPy arrays go to the numba version under the numba backend (``tinyvae.backend.current()``), else to the
  NumPy version;
* ``backend="numpy" | "numba" | "cupy"`` names a version and overrides the rule (the tests and benchmarks
  use it to compare the versions on the same arrays).

Whether a kernel is called by the engine at all is decided elsewhere: the kernels in ``kernels/unrouted/``
follow the same rule but no op calls them (their README says why).
"""

from __future__ import annotations

import numpy as np

from tinyvae import backend as _backend
from tinyvae.backend import array_module


def pick_version(versions: dict, kernel: str, arrays, backend: str | None = None):
    """The function from ``versions`` ({"numpy": f, "numba": f, "cupy": f}) that should run on ``arrays``.

    ``kernel`` names the entry point in the error for an unknown ``backend``. The table is read at call
    time, so a test that swaps an entry sees its swap."""
    if backend is None:
        xp = array_module(*arrays)
        if xp is np:
            backend = "numba" if _backend.current() == "numba" else "numpy"
        elif xp is _backend.simulated_array_module():
            backend = "numpy"  # the test suite's stand-in for CuPy: the NumPy version runs on it through xp
        else:
            backend = "cupy"
    if backend not in versions:
        raise ValueError(f"{kernel}: backend {backend!r} is not one of {sorted(versions)}")
    return versions[backend]
