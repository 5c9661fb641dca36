"""tinyvae.kernels: the hot loops, each with a NumPy reference (and, from the kernels issue on, numba and
CuPy versions side by side in the same file). Ops call the functions exported here, never a backend."""

from tinyvae.kernels.codebook import nearest_code_numpy

nearest_code = nearest_code_numpy

__all__ = ["nearest_code"]
