"""tinyvae.kernels: the hot loops. Each kernel file holds a NumPy reference, a numba version and a CuPy
version side by side; the entry points exported here pick the version that matches the arrays and
``tinyvae.backend.current()``. Ops call these functions, never a backend directly."""

from tinyvae.kernels.adam import adam_update
from tinyvae.kernels.codebook import nearest_code

__all__ = ["adam_update", "nearest_code"]
