"""ReLU forward and backward, each one pass over the array.

    forward:   y = max(x, 0)
    backward:  dL/dx = g · [y > 0]      (y > 0 exactly where x > 0; the gradient at the kink is taken as 0)

NumPy's ``maximum`` costs about 0.38 ns per float32 element on the 2-core AMD EPYC (Zen 4) of
benchmarks/RESULTS.md, and ``g * (y > 0)`` makes a boolean temporary and a second pass; the numba loops are
one vectorised pass each. Measured there at (128, 400) float32, one thread (the "Routed since" table of
RESULTS.md): forward 20.1 → 5.8 µs, backward 15.7 → 8.5 µs; for the two ReLUs of a VAE step at batch 128
that is about 0.05 ms of 5.6.

NaN semantics match NumPy's: a NaN input stays NaN in the forward (``x if not x < 0``), and the backward
multiplies by the mask rather than selecting, so a NaN gradient stays NaN where NumPy's does (training
divergence must stay visible).

Three versions side by side: NumPy (the reference), numba (contiguous float32/float64 arrays; any other
layout goes to NumPy), CuPy (elementwise kernels, compiled with flush-to-zero: float32 subnormals count as
0 on the GPU, see section 3).
"""

from __future__ import annotations

import functools

import numpy as np
from tinyvae.kernels._cuda_source import ElementwiseKernelSource
from tinyvae.kernels._jit import compile_kernels
from tinyvae.kernels._routing import pick_version

from tinyvae.backend import array_module

COMPILE_SECONDS: dict[str, float] = {}


# 1. NumPy reference ---------------------------------------------------------------------------------------


def relu_forward_numpy(x):
    return array_module(x).maximum(x, 0)


def relu_backward_numpy(g, y):
    return g * (y > 0)


# 2. numba: one pass each ---------------------------------------------------------------------------------


def _forward_pass(x, y):
    zero = x.dtype.type(0)
    for i in range(x.size):
        v = x[i]
        y[i] = zero if v < zero else v  # NaN is not < 0, so it passes through as in np.maximum


def _backward_pass(g, y, out):
    zero, one = y.dtype.type(0), y.dtype.type(1)
    for i in range(g.size):
        out[i] = g[i] * (one if y[i] > zero else zero)  # a product, so a NaN g stays NaN as in NumPy


@functools.cache
def _numba_kernels():
    """Compile (or load from numba's on-disk cache) both passes; on first use, never at import."""
    types = ("float32", "float64")
    passes = [
        (_forward_pass, [f"void({t}[::1], {t}[::1])" for t in types]),
        (_backward_pass, [f"void({t}[::1], {t}[::1], {t}[::1])" for t in types]),
    ]
    options = {"boundscheck": False, "error_model": "numpy"}
    return compile_kernels("relu", passes, seconds=COMPILE_SECONDS, **options)


def _flat_ok(*arrays):
    """True when the numba passes take these arrays: same shape and dtype, float32/64, C-contiguous, writable
    (numba's compiled signatures take no read-only arrays)."""
    first = arrays[0]
    return first.dtype in (np.float32, np.float64) and all(
        a.shape == first.shape and a.dtype == first.dtype and a.flags.c_contiguous and a.flags.writeable
        for a in arrays
    )


def relu_forward_numba(x):
    if not _flat_ok(x):
        return relu_forward_numpy(x)
    y = np.empty_like(x)
    _numba_kernels()[0](x.reshape(-1), y.reshape(-1))
    return y


def relu_backward_numba(g, y):
    if not _flat_ok(g, y):
        return relu_backward_numpy(g, y)
    out = np.empty_like(y)
    _numba_kernels()[1](g.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


# 3. CuPy ------------------------------------------------------------------------------------------------
# Compiled with CuPy's -ftz=true (kernels/_cuda_source.py): the GPU reads a float32 subnormal as 0 where
# NumPy keeps it. Measured on an H100 (CuPy 14.2): relu(−1e-40) comes out as −1e-40 (it compares as 0, so
# the select passes it through), a gradient of 1e-40 comes out as 0, and a subnormal y > 0 fails y > 0 in
# the backward, so its gradient is 0 rather than g: the kink moves by less than 1.18e-38, float32's
# smallest normal. float64 keeps its subnormals.

CUPY_FORWARD = ElementwiseKernelSource(
    name="tinyvae_relu_forward", in_params="T x", out_params="T y", operation="y = x < (T)0 ? (T)0 : x;"
)
CUPY_BACKWARD = ElementwiseKernelSource(
    name="tinyvae_relu_backward",
    in_params="T g, T y",
    out_params="T out",
    operation="out = g * (y > (T)0 ? (T)1 : (T)0);",
)


@functools.cache
def _cupy_kernels():
    return CUPY_FORWARD.build(), CUPY_BACKWARD.build()


def relu_forward_cupy(x):
    return _cupy_kernels()[0](x)


def relu_backward_cupy(g, y):
    return _cupy_kernels()[1](g, y)


# Routing --------------------------------------------------------------------------------------------------

FORWARD = {"numpy": relu_forward_numpy, "numba": relu_forward_numba, "cupy": relu_forward_cupy}
BACKWARD = {"numpy": relu_backward_numpy, "numba": relu_backward_numba, "cupy": relu_backward_cupy}


def relu_forward(x, *, backend=None):
    """max(x, 0); the version follows the arrays and ``tinyvae.backend`` unless ``backend`` names one."""
    return pick_version(FORWARD, "relu_forward", (x,), backend)(x)


def relu_backward(g, y, *, backend=None):
    """g · [y > 0], the gradient of ReLU given its output y."""
    return pick_version(BACKWARD, "relu_backward", (g, y), backend)(g, y)
