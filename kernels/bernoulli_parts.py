"""The Bernoulli log-probability's fast path: the arithmetic around its two transcendentals, fused.

tinyvae's elementwise op ``bernoulli_log_prob(l, x) = x l − softplus(l)`` (tinyvae/ops/likelihood.py) writes
the textbook formula; this file is how it runs fast. It needs e = exp(−|l|) and log(1 + e) in the forward
and σ(l) in the backward. NumPy's float32 ``exp`` and ``log1p`` are SIMD (about 0.45 ns per element on the
2-core AMD EPYC (Zen 4) of benchmarks/RESULTS.md); numba's are scalar library calls there (that numba has no
SVML), so the op keeps those two in NumPy and hands the arithmetic around them to these two kernels:

    log_prob_terms(l, x, log1p_e)      = x l − max(l, 0) − log1p_e              (the forward's output)
    logit_gradient(l, x, e, g)         = (x − σ(l)) g,   σ(l) from e as below   (the backward's dL/dl)

and computes e itself with :func:`exp_minus_abs`: one buffer, written in place three times (|l|, −|l|,
exp), instead of three arrays, with the check for infinite logits read off |l| on the way.

σ(l) from e: with s = e / (1 + e) = σ(−|l|), σ(l) = s for l < 0 and 1 − s for l ≥ 0. The op's own
``stable_sigmoid`` (tinyvae/ops/elementwise.py) picks the branch with ``where``; :func:`sigmoid_from_e`
writes it as s + m (1 − 2s) with the arithmetic mask m = [l ≥ 0], because ``where`` on random signs costs
about 3.5 ns per element against under 1 ns for the whole masked form (branch mispredictions; RESULTS.md,
"Training step against PyTorch", change 2: 348 against 72 µs at 128 × 784). For l < 0 the masked form is s
exactly; for l ≥ 0 (σ ≥ 1/2) it is within about 2 ulp. The tests hold every version here to the op's
formulas (tests/test_kernel_bernoulli_parts.py).

NumPy spends four or five passes over the array on each line (a temporary per ufunc); the numba versions
make one. Measured at (128, 784) float32, one thread (the "Routed since" table of RESULTS.md): forward
arithmetic 72 → 23 µs, gradient 110 → 29 µs.

Layout: the numba versions see the logits as (rows, D) rows of the last axis, x as (rows_x, D) with logits
row r reading x row r mod rows_x (x repeated along leading axes, as IWAE's k samples of one batch), and g
either as (rows, D) or, when it is constant along the last axis (the gradient of a sum over features, a
stride-0 broadcast), as one value per row. Anything else (x or g broadcast another way, mixed dtypes) goes
to the NumPy version, which broadcasts freely. ``error_model="numpy"``: numba's default inserts a
division-by-zero check that stops LLVM from vectorising the division (1.1 → 0.23 ns per element measured).

Three versions side by side: NumPy (the reference), numba, CuPy. CuPy compiles with flush-to-zero
(``-ftz=true``, kernels/_cuda_source.py): in float32, values below 1.18e-38 are 0 on the GPU, so σ(−100)
is 0 there where NumPy gives 3.8e-44 (float64 keeps its subnormals).
"""

from __future__ import annotations

import functools

import numpy as np
from tinyvae.kernels._cuda_source import ElementwiseKernelSource
from tinyvae.kernels._jit import compile_kernels
from tinyvae.kernels._routing import pick_version

from tinyvae.backend import array_module

COMPILE_SECONDS: dict[str, float] = {}

# The test "is every |l| finite?" reads |l|'s IEEE-754 bit patterns as unsigned integers: for a float whose
# sign bit is clear (|l| always has it clear), that integer order is the numeric order, with +inf above every
# finite value and NaN above +inf. So one integer max answers it, on the buffer that holds |l| anyway.
_UNSIGNED = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}
_INF_BITS = {dtype: int(np.array(np.inf, dtype).view(u)) for dtype, u in _UNSIGNED.items()}


# ---------------------------------------------------------------------------------------------------------
# 0. Shared by every version: e = exp(−|l|), and σ(l) from it.
# ---------------------------------------------------------------------------------------------------------


def exp_minus_abs(logits):
    """``(e, finite)``: e = exp(−|l|) ∈ [0, 1] (it never overflows) as a new array of the logits' shape and
    dtype (0-d logits included), and whether every |l| is finite (False for ±inf or NaN)."""
    xp = array_module(logits)
    e = xp.empty(logits.shape, dtype=logits.dtype)  # an array even for 0-d logits, so out= works
    xp.abs(logits, out=e)
    finite = e.size == 0 or int(e.view(_UNSIGNED[e.dtype]).max()) < _INF_BITS[e.dtype]
    xp.negative(e, out=e)
    xp.exp(e, out=e)
    return e, bool(finite)


def sigmoid_from_e(logits, e):
    """σ(l) given e = exp(−|l|): s + m (1 − 2s) with s = e / (1 + e) and m = [l ≥ 0] (see the module
    docstring). σ(±inf) is 1 or 0 exactly; NaN stays NaN."""
    sigmoid = e / (1 + e)  # s = σ(−|l|)
    correction = sigmoid * -2
    correction += 1
    correction *= logits >= 0  # 1 − 2s where l ≥ 0, else 0
    sigmoid += correction
    return sigmoid


# ---------------------------------------------------------------------------------------------------------
# 1. NumPy reference (any broadcastable shapes).
# ---------------------------------------------------------------------------------------------------------


def log_prob_terms_numpy(logits, x, log1p_e):
    """x l − max(l, 0) − log1p_e, broadcast."""
    xp = array_module(logits, x)
    log_prob = x * logits
    log_prob -= xp.maximum(logits, 0)
    log_prob -= log1p_e
    return log_prob


def logit_gradient_numpy(logits, x, e, g):
    """(x − σ(l)) g, σ(l) from e = exp(−|l|), broadcast."""
    grad = x - sigmoid_from_e(logits, e)
    grad *= g
    return grad


# ---------------------------------------------------------------------------------------------------------
# 2. numba: one pass over (rows, D).
# ---------------------------------------------------------------------------------------------------------


def _terms_pass(logits, x, log1p_e, out):
    rows, features = logits.shape
    x_rows = x.shape[0]
    zero = logits.dtype.type(0)
    for r in range(rows):
        xr = r % x_rows
        for d in range(features):
            l = logits[r, d]
            out[r, d] = x[xr, d] * l - (l if l > zero else zero) - log1p_e[r, d]


def _gradient_pass(logits, x, e, g, out):
    """``g`` is (rows, D), or (rows, 1) for a gradient constant along the features."""
    rows, features = logits.shape
    x_rows = x.shape[0]
    per_row = g.shape[1] == 1
    dtype = logits.dtype.type
    zero, one, two = dtype(0), dtype(1), dtype(2)
    for r in range(rows):
        xr = r % x_rows
        for d in range(features):
            ed = e[r, d]
            s = ed / (one + ed)  # σ(−|l|)
            mask = one if logits[r, d] >= zero else zero
            out[r, d] = x[xr, d] - (s + mask * (one - two * s))  # x − σ(l), as sigmoid_from_e
        if per_row:
            g_r = g[r, 0]
            for d in range(features):
                out[r, d] *= g_r
        else:
            for d in range(features):
                out[r, d] *= g[r, d]


def _signatures(n_inputs):
    return [f"void({', '.join([f'{t}[:, ::1]'] * (n_inputs + 1))})" for t in ("float32", "float64")]


@functools.cache
def _numba_kernels():
    """Compile (or load from numba's on-disk cache) both passes; on first use, never at import."""
    passes = [(_terms_pass, _signatures(3)), (_gradient_pass, _signatures(4))]
    options = {"boundscheck": False, "error_model": "numpy", "fastmath": {"contract"}}
    return compile_kernels("bernoulli_parts", passes, seconds=COMPILE_SECONDS, **options)


def _rows(a, shape):
    """``a`` as a writable-flagged C-contiguous array of ``shape`` (numba's compiled signatures take no
    read-only arrays; broadcast views are read-only, so those few get copied)."""
    a = np.ascontiguousarray(a)
    return (a if a.flags.writeable else a.copy()).reshape(shape)


def _as_rows(logits, x):
    """(logits as (rows, D), x as (rows_x, D)) C-contiguous, or None when the numba layout does not apply."""
    if logits.ndim == 0 or logits.size == 0 or logits.dtype not in (np.float32, np.float64):
        return None
    if x.dtype != logits.dtype or not 1 <= x.ndim <= logits.ndim:
        return None
    if x.shape != logits.shape[logits.ndim - x.ndim :]:
        return None  # x broadcasts some other way: the NumPy version handles it
    features = logits.shape[-1]
    return _rows(logits, (-1, features)), _rows(x, (-1, features))


def log_prob_terms_numba(logits, x, log1p_e):
    rows = _as_rows(logits, x)
    if rows is None or log1p_e.shape != logits.shape or log1p_e.dtype != logits.dtype:
        return log_prob_terms_numpy(logits, x, log1p_e)
    logits2, x2 = rows
    log1p_e2 = _rows(log1p_e, logits2.shape)
    out = np.empty(logits.shape, dtype=logits.dtype)
    _numba_kernels()[0](logits2, x2, log1p_e2, out.reshape(logits2.shape))
    return out


def logit_gradient_numba(logits, x, e, g):
    rows = _as_rows(logits, x)
    g = np.asarray(g)
    if rows is None or e.shape != logits.shape or g.shape != logits.shape or g.dtype != logits.dtype:
        return logit_gradient_numpy(logits, x, e, g)
    logits2, x2 = rows
    if g.strides[-1] == 0:  # constant along the features (the gradient of a sum over them): one per row
        g2 = _rows(g[..., :1], (-1, 1))
    else:
        g2 = _rows(g, logits2.shape)
    e2 = _rows(e, logits2.shape)
    out = np.empty(logits.shape, dtype=logits.dtype)
    _numba_kernels()[1](logits2, x2, e2, g2, out.reshape(logits2.shape))
    return out


# ---------------------------------------------------------------------------------------------------------
# 3. CuPy: elementwise kernels, broadcasting as NumPy does. Compiled with CuPy's -ftz=true
#    (kernels/_cuda_source.py): in float32 a subnormal e or σ is 0 on the GPU (σ(−100) = 0, not 3.8e-44).
# ---------------------------------------------------------------------------------------------------------

CUPY_LOG_PROB_TERMS = ElementwiseKernelSource(
    name="tinyvae_bernoulli_log_prob_terms",
    in_params="T l, T t, T log1p_e",
    out_params="T out",
    operation="out = t * l - (l > (T)0 ? l : (T)0) - log1p_e;",
)
CUPY_LOGIT_GRADIENT = ElementwiseKernelSource(
    name="tinyvae_bernoulli_logit_gradient",
    in_params="T l, T t, T e, T g",
    out_params="T out",
    operation="""
    T s = e / ((T)1 + e);
    T sigmoid = l >= (T)0 ? (T)1 - s : s;
    out = (t - sigmoid) * g;
    """,
)


@functools.cache
def _cupy_kernels():
    return CUPY_LOG_PROB_TERMS.build(), CUPY_LOGIT_GRADIENT.build()


def log_prob_terms_cupy(logits, x, log1p_e):
    return _cupy_kernels()[0](logits, x.astype(logits.dtype, copy=False), log1p_e)


def logit_gradient_cupy(logits, x, e, g):
    return _cupy_kernels()[1](logits, x.astype(logits.dtype, copy=False), e, g)


# ---------------------------------------------------------------------------------------------------------
# Routing.
# ---------------------------------------------------------------------------------------------------------

LOG_PROB_TERMS = {"numpy": log_prob_terms_numpy, "numba": log_prob_terms_numba, "cupy": log_prob_terms_cupy}
LOGIT_GRADIENT = {"numpy": logit_gradient_numpy, "numba": logit_gradient_numba, "cupy": logit_gradient_cupy}


def log_prob_terms(logits, x, log1p_e, *, backend=None):
    """``x l − max(l, 0) − log1p_e`` (the Bernoulli log-probability given log(1 + exp(−|l|))).

    CuPy arrays go to CuPy, NumPy arrays to numba under the numba backend (falling back to NumPy for
    layouts it does not take), else NumPy; ``backend`` forces one."""
    return pick_version(LOG_PROB_TERMS, "log_prob_terms", (logits, x), backend)(logits, x, log1p_e)


def logit_gradient(logits, x, e, g, *, backend=None):
    """``(x − σ(l)) g`` given e = exp(−|l|): the Bernoulli log-probability's gradient in the logits."""
    return pick_version(LOGIT_GRADIENT, "logit_gradient", (logits, x), backend)(logits, x, e, g)
