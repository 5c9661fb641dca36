"""The Bernoulli log-likelihood of a decoder's logits, summed over the features, with its gradient.

Not routed: no op calls this kernel (kernels/unrouted/README.md says why: on the 2-core AMD EPYC of
benchmarks/RESULTS.md its numba version, with exp and log inside the loop, lost to NumPy). The engine's
Bernoulli term is ``bernoulli_log_prob`` (tinyvae/ops/likelihood.py) on kernels/bernoulli_parts.py.

For logits l and targets x ∈ [0, 1] of shape (R, D):

    out_r = Σ_d [x_rd l_rd − softplus(l_rd)],      grad_rd = ∂out_r/∂l_rd = x_rd − σ(l_rd),

with softplus(l) = max(l, 0) + log(1 + e) and σ(l) = 1/(1 + e) for l ≥ 0, e/(1 + e) for l < 0, where
e = exp(−|l|) ∈ (0, 1] never overflows. A training step needs both, so the fast versions produce them in one
pass over the logits (the forward of a VAE's reconstruction term is also its backward, up to the incoming
gradient). ``x`` may have fewer rows than the logits when it repeats along leading axes (IWAE's k samples
of one batch): logits row r reads x row r mod R_x.

``log(1 + e)`` rather than ``log1p(e)``: in float32, log1p cost ~13 ns/element against ~1.5 for log in
numba's scalar calls on that machine.
The difference is below e · eps ≤ eps per element in absolute terms, smaller than the rounding of the sum
itself; σ keeps full relative precision either way (it is computed from e, not from softplus).

Three versions side by side, each returning ``(out (R,), grad (R, D) or None)``:

1. :func:`bernoulli_numpy`: the reference, NumPy ufuncs.
2. :func:`bernoulli_numba`: one fused pass, rows in parallel (``prange``).
3. :func:`bernoulli_cupy`: a CuPy elementwise kernel for the gradient and the terms, then a row sum.
   Compiled with flush-to-zero (``-ftz=true``, kernels/_cuda_source.py): in float32 a subnormal e or σ
   is 0 on the GPU (σ(−100) = 0, not 3.8e-44).
"""

from __future__ import annotations

import functools

import numpy as np
from tinyvae.kernels._cuda_source import ElementwiseKernelSource
from tinyvae.kernels._jit import compile_kernels
from tinyvae.kernels._routing import pick_version

from tinyvae.backend import array_module

# The loop's numba.prange: compile_kernels sets this on first use, so importing this file imports no numba.
numba = None

COMPILE_SECONDS: dict[str, float] = {}


def _check(logits, x):
    if logits.ndim != 2 or x.ndim != 2 or logits.shape[1] != x.shape[1]:
        raise ValueError(
            f"bernoulli: logits {logits.shape} and x {x.shape} must both be 2-D (rows, features) with the "
            "same number of features"
        )
    if x.shape[0] == 0 and logits.shape[0] != 0 or x.shape[0] and logits.shape[0] % x.shape[0]:
        raise ValueError(
            f"bernoulli: logits have {logits.shape[0]} rows, which is not a multiple of x's {x.shape[0]} rows"
        )


def _repeat_rows(x, rows):
    """x tiled along the rows to ``rows`` rows (a view when no tiling is needed)."""
    xp = array_module(x)
    return x if x.shape[0] == rows else xp.tile(x, (rows // x.shape[0], 1))


# ---------------------------------------------------------------------------------------------------------
# 1. NumPy reference.
# ---------------------------------------------------------------------------------------------------------


def bernoulli_numpy(logits, x, want_grad=True):
    xp = array_module(logits, x)
    _check(logits, x)
    x = _repeat_rows(x, logits.shape[0])
    e = xp.exp(-xp.abs(logits))
    terms = x * logits - xp.maximum(logits, 0) - xp.log(1 + e)
    out = terms.sum(axis=1)
    if not want_grad:
        return out, None
    sigmoid = xp.where(logits >= 0, 1, e) / (1 + e)
    return out, x - sigmoid


# ---------------------------------------------------------------------------------------------------------
# 2. numba: one fused pass per row, rows in parallel.
# ---------------------------------------------------------------------------------------------------------

_NUMBA_SIGNATURES = [
    f"void({t}[:, ::1], {t}[:, ::1], {t}[::1], {t}[:, ::1], boolean)" for t in ("float32", "float64")
]


def _fused_bernoulli(logits, x, out, grad, want_grad):
    rows, features = logits.shape
    x_rows = x.shape[0]
    dtype = logits.dtype.type
    zero, one = dtype(0), dtype(1)
    for r in numba.prange(rows):
        xr = r % x_rows
        total = 0.0  # float64 accumulator: 784 float32 terms summed without drift
        for d in range(features):
            l = logits[r, d]
            t = x[xr, d]
            e = np.exp(-abs(l))
            positive = l >= zero
            total += t * l - (l if positive else zero) - np.log(one + e)
            if want_grad:
                grad[r, d] = t - (one if positive else e) / (one + e)
        out[r] = total


@functools.cache
def _numba_kernel():
    """Compile (or load from numba's on-disk cache) the fused pass; on first use, never at import."""
    (kernel,) = compile_kernels(
        "bernoulli_log_likelihood",
        [(_fused_bernoulli, _NUMBA_SIGNATURES)],
        seconds=COMPILE_SECONDS,
        parallel=True,
        boundscheck=False,
        fastmath={"contract"},
    )
    return kernel


def bernoulli_numba(logits, x, want_grad=True):
    _check(logits, x)
    logits = np.ascontiguousarray(logits)
    x = np.ascontiguousarray(x, dtype=logits.dtype)
    out = np.empty(logits.shape[0], dtype=logits.dtype)
    grad = np.empty(logits.shape if want_grad else (0, 0), dtype=logits.dtype)
    _numba_kernel()(logits, x, out, grad, bool(want_grad))
    return out, (grad if want_grad else None)


# ---------------------------------------------------------------------------------------------------------
# 3. CuPy. Compiled with CuPy's -ftz=true (kernels/_cuda_source.py): in float32 a subnormal e or σ is 0 on
#    the GPU (σ(−100) = 0, not 3.8e-44).
# ---------------------------------------------------------------------------------------------------------

CUPY_TERMS = ElementwiseKernelSource(
    name="tinyvae_bernoulli_terms",
    in_params="T l, T t",
    out_params="T term, T grad",
    operation="""
    T e = exp(-fabs(l));
    term = t * l - (l > 0 ? l : (T)0) - log((T)1 + e);
    grad = t - (l >= 0 ? (T)1 : e) / ((T)1 + e);
    """,
)


@functools.cache
def _cupy_kernel():
    return CUPY_TERMS.build()


def bernoulli_cupy(logits, x, want_grad=True):
    _check(logits, x)
    x = _repeat_rows(x.astype(logits.dtype, copy=False), logits.shape[0])
    terms, grad = _cupy_kernel()(logits, x)
    return terms.sum(axis=1), (grad if want_grad else None)


IMPLEMENTATIONS = {"numpy": bernoulli_numpy, "numba": bernoulli_numba, "cupy": bernoulli_cupy}


def bernoulli_log_likelihood(logits, x, want_grad=True, *, backend=None):
    """``(Σ_d log Bern(x_d; σ(l_d)) per row, ∂/∂logits or None)`` for 2-D logits and x; the version follows
    the rule of kernels/_routing.py (CuPy arrays go to CuPy, NumPy arrays to numba under the numba backend,
    else NumPy) unless ``backend`` names one.

    On the 2-core AMD EPYC of benchmarks/RESULTS.md ("Fused elementwise kernels") the numba version lost at
    one thread: numba has no SVML there, so its exp and log are scalar libm calls, while NumPy's float32
    exp/log are SIMD (b128: 0.78 ms against NumPy's 0.62 ms). It won only with 2 threads (0.38 ms on a quiet
    machine), where its OpenMP threads would compete with BLAS's in a training step.
    """
    version = pick_version(IMPLEMENTATIONS, "bernoulli_log_likelihood", (logits, x), backend)
    return version(logits, x, want_grad)
