"""Which version of a kernel runs: the one rule the routed kernels share."""

from __future__ import annotations

import numpy as np

from tinyvae import backend as _backend
from tinyvae.backend import array_module


def pick_version(versions: dict, kernel: str, arrays, backend: str | None = None):
    """The function from ``versions`` ({"numpy": f, "numba": f, "cupy": f}) that should run on ``arrays``.

    CuPy arrays go to the CuPy version; NumPy arrays go to numba under the numba backend, else to NumPy.
    ``backend`` names one and overrides the rule (the tests and benchmarks use it)."""
    if backend is None:
        if array_module(*arrays) is not np:
            backend = "cupy"
        else:
            backend = "numba" if _backend.current() == "numba" else "numpy"
    if backend not in versions:
        raise ValueError(f"{kernel}: backend {backend!r} is not one of {sorted(versions)}")
    return versions[backend]
