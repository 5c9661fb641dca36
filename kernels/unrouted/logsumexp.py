"""Row-wise log-sum-exp with its gradient (the softmax), for the IWAE bound's reduction over K samples.

Not routed: the engine's ``LogSumExp`` (tinyvae/ops/reduce.py) runs NumPy, because this kernel's numba
version lost to it at the IWAE's size (kernels/unrouted/README.md has the numbers).

For x of shape (R, C), with m_r = max_c x_rc taken as 0 when it is not finite:

    out_r = m_r + log Σ_c exp(x_rc − m_r),      softmax_rc = ∂out_r/∂x_rc = exp(x_rc − out_r).

Shifting by the row maximum makes the largest term exp(0) = 1, so nothing overflows and inputs of
magnitude 1e4 are fine (as in ``LogSumExp``, tinyvae/ops/reduce.py). Edge rows:

* an all −inf row (or a row with no columns) has sum 0: out = −inf and a softmax row of zeros;
* a −inf entry in an otherwise finite row has exp(−inf) = 0: softmax 0 there, the rest sums to 1;
* a row with c entries equal to +inf (and no NaN) has out = +inf and softmax 1/c at those entries, 0
  elsewhere: the limit of the softmax as they grow, where exp(x − out) would be ∞ − ∞ = NaN;
* a row with a NaN has out = NaN and a NaN softmax row.

These are the engine's definitions (``LogSumExp`` in tinyvae/ops/reduce.py and its backward), so the two
agree on every input; the engine alone refuses an axis of size 0.

The IWAE's log-weights come as (K, B) (``VAE.log_weights``), and the bound reduces over K: these kernels
take the transpose, rows = B examples, columns = K samples, so that each row is one contiguous run of
memory. A (K, B) array's ``.T`` is a strided view; the numba and CuPy versions copy it to C order first
(at (50, 128) float32 that copy is 25 KiB).

Three versions side by side, each returning ``(out (R,), softmax (R, C))`` in x's dtype:

1. :func:`logsumexp_rows_numpy`: the reference, NumPy reductions and ufuncs.
2. :func:`logsumexp_rows_numba`: per row, one pass for the maximum, one that stores exp(x − m) and sums it,
   one that scales the stored exponentials by 1/sum into the softmax (three passes over a row that sits in
   L1, instead of NumPy's eight passes with temporaries). A serial build on one thread by default
   (``tinyvae.backend.load_numba``: small loops beside BLAS stay on one thread); rows in ``prange`` when
   more threads are asked.
3. :func:`logsumexp_rows_cupy`: a RawKernel, one warp per row, shuffle reductions for the max and the sum.
   Compiled with flush-to-zero (``-ftz=true``, kernels/_cuda_source.py): in float32, a softmax entry below
   1.18e-38 (an entry more than ~87 below its row's maximum) is 0 on the GPU; NumPy keeps the subnormal.
"""

from __future__ import annotations

import functools
import time

import numpy as np
from tinyvae.kernels._cuda_source import RawModuleSource
from tinyvae.kernels._jit import compile_kernels
from tinyvae.kernels._routing import pick_version

from tinyvae import backend as _backend
from tinyvae.backend import array_module

# The loop's numba.prange: compile_kernels sets this on first use, so importing this file imports no numba.
numba = None

COMPILE_SECONDS: dict[str, float] = {}  # first-use compile/load time per version, read by the benchmark


def _check(x):
    if x.ndim != 2:
        raise ValueError(
            f"logsumexp_rows: x has shape {x.shape}; it must be 2-D (rows, columns), reduced over the columns"
        )
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"logsumexp_rows: x has dtype {x.dtype}; it must be float32 or float64")


# ---------------------------------------------------------------------------------------------------------
# 1. NumPy reference.
# ---------------------------------------------------------------------------------------------------------


def logsumexp_rows_numpy(x):
    """``(out (R,), softmax (R, C))`` with NumPy; the reference every other version is checked against."""
    xp = array_module(x)
    _check(x)
    rows, cols = x.shape
    if cols == 0:  # an empty sum is 0: log 0 = −inf, and there is no softmax to return
        return xp.full(rows, -xp.inf, dtype=x.dtype), xp.empty((rows, 0), dtype=x.dtype)
    top = x.max(axis=1, keepdims=True)  # (R, 1): NaN if the row holds one, +inf if it holds +inf
    shift = xp.where(xp.isfinite(top), top, 0).astype(x.dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        exps = xp.exp(x - shift)  # (R, C), each in [0, 1] for a finite row
        total = exps.sum(axis=1, keepdims=True)  # (R, 1), ≥ 1 unless all −inf (0), +inf or NaN
        out = xp.log(total) + shift  # log 0 = −inf for an all −inf row, +inf and NaN pass through
        softmax = xp.where(total == 0, 0, exps / total)  # NaN row: NaN; +inf row: replaced next
    at_inf = (x == xp.inf) & (top == xp.inf)  # the entries that carry a +inf row's weight
    share = at_inf / xp.maximum(at_inf.sum(axis=1, keepdims=True), 1)
    softmax = xp.where(top == xp.inf, share, softmax).astype(x.dtype)
    return out[:, 0], softmax


# ---------------------------------------------------------------------------------------------------------
# 2. numba: three passes per row, rows in parallel (one thread unless asked).
# ---------------------------------------------------------------------------------------------------------

_NUMBA_SIGNATURES = [f"void({t}[:, ::1], {t}[::1], {t}[:, ::1])" for t in ("float32", "float64")]


def _lse_rows(x, out, softmax):
    rows, cols = x.shape
    dtype = x.dtype.type
    zero, one, inf, nan = dtype(0), dtype(1), dtype(np.inf), dtype(np.nan)
    for r in numba.prange(rows):
        shift = dtype(-np.inf)
        for c in range(cols):  # pass 1: the row maximum (max(m, NaN) is m here: a NaN shows in pass 2)
            shift = max(shift, x[r, c])
        if shift == inf:  # +inf entries take all the weight, 1/c each; a NaN anywhere makes the row NaN
            count = 0
            has_nan = False
            for c in range(cols):
                v = x[r, c]
                count += 1 if v == inf else 0
                has_nan = has_nan or v != v
            out[r] = nan if has_nan else inf
            share = nan if has_nan else one / dtype(count)
            for c in range(cols):
                softmax[r, c] = share if has_nan or x[r, c] == inf else zero
        else:
            if not np.isfinite(shift):  # all −inf (or all NaN): no shift, as the reference
                shift = zero
            total = 0.0  # float64 accumulator: K float32 terms summed without drift
            for c in range(cols):  # pass 2: exp(x − m), stored, and its sum (NaN if the row holds one)
                e = np.exp(x[r, c] - shift)
                softmax[r, c] = e
                total += e
            if total > 0.0:
                out[r] = np.log(total) + shift
                scale = dtype(1.0 / total)
            elif total == 0.0:  # all −inf: out = −inf, softmax 0 · 0 = 0
                out[r] = -inf
                scale = zero
            else:  # NaN
                out[r] = nan
                scale = nan
            for c in range(cols):  # pass 3: normalise
                softmax[r, c] *= scale


@functools.cache
def _numba_kernel(parallel):
    """Compile (or load from numba's on-disk cache) the kernel; on first use, never at import. A serial
    build for one thread (no ~5 µs pool switch through ``backend.numba_threads``), a ``parallel=True``
    build for more."""
    (kernel,) = compile_kernels(
        "logsumexp_rows",
        [(_lse_rows, _NUMBA_SIGNATURES)],
        seconds=COMPILE_SECONDS,
        key="numba parallel" if parallel else "numba",
        parallel=parallel,
        boundscheck=False,
        fastmath={"contract"},
    )
    return kernel


def logsumexp_rows_numba(x, *, threads=1):
    """``(out (R,), softmax (R, C))`` in one numba call; ``threads`` = 1 runs the serial build (the
    project's rule for small memory-bound loops), more the parallel build on that many threads."""
    _check(x)
    x = np.ascontiguousarray(x)  # a (K, B) array's .T is copied here, into rows of K
    out = np.empty(x.shape[0], dtype=x.dtype)
    softmax = np.empty(x.shape, dtype=x.dtype)
    if threads == 1:
        _numba_kernel(False)(x, out, softmax)
    else:
        with _backend.numba_threads(threads):
            _numba_kernel(True)(x, out, softmax)
    return out, softmax


# ---------------------------------------------------------------------------------------------------------
# 3. CuPy: one warp per row (compiled and checked against the reference on an H200, CuPy 14.2).
# ---------------------------------------------------------------------------------------------------------

_CUDA_SOURCE = r"""
// NVRTC compiles without math.h, so there are no INFINITY / NAN macros: their float bit patterns instead
// (converted to double exactly where T is double).
#define TV_INF __int_as_float(0x7f800000)
#define TV_NAN __int_as_float(0x7fc00000)

template <typename T>
__device__ T warp_max(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = max(v, __shfl_xor_sync(0xffffffff, v, offset));
    return v;
}

template <typename T>
__device__ T warp_sum(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}

// One warp per row; rows advance by a grid stride. Lanes stride over the columns.
template <typename T>
__global__ void lse_rows(const T* x, T* out, T* softmax, int rows, int cols) {
    const int lane = threadIdx.x % 32;
    const int warps_per_block = blockDim.x / 32;
    const int first = blockIdx.x * warps_per_block + threadIdx.x / 32;
    for (int r = first; r < rows; r += gridDim.x * warps_per_block) {
        const T* row = x + (long long)r * cols;
        T* soft = softmax + (long long)r * cols;
        T shift = -TV_INF;
        for (int c = lane; c < cols; c += 32) shift = max(shift, row[c]);  // fmax: a NaN shows in the sum
        shift = warp_max(shift);  // the same on every lane, so the branches below are uniform
        if (shift == TV_INF) {  // +inf entries take all the weight, 1/c each; any NaN makes the row NaN
            int count = 0, has_nan = 0;
            for (int c = lane; c < cols; c += 32) {
                count += row[c] == TV_INF;
                has_nan |= row[c] != row[c];
            }
            count = warp_sum(count);
            has_nan = warp_sum(has_nan);
            const T share = has_nan ? (T)TV_NAN : (T)1 / (T)count;
            for (int c = lane; c < cols; c += 32) soft[c] = has_nan || row[c] == TV_INF ? share : (T)0;
            if (lane == 0) out[r] = has_nan ? (T)TV_NAN : (T)TV_INF;
            continue;
        }
        if (!isfinite(shift)) shift = 0;
        double total = 0;
        for (int c = lane; c < cols; c += 32) {
            T e = exp(row[c] - shift);
            soft[c] = e;
            total += e;
        }
        total = warp_sum(total);  // NaN if the row holds a NaN, 0 if it is all -inf
        const T scale = total > 0 ? (T)(1.0 / total) : total == 0 ? (T)0 : (T)TV_NAN;
        for (int c = lane; c < cols; c += 32) soft[c] *= scale;
        if (lane == 0) out[r] = total > 0 ? (T)log(total) + shift : total == 0 ? (T)-TV_INF : (T)TV_NAN;
    }
}
"""

_CUDA_ENTRY = {np.dtype(np.float32): "lse_rows<float>", np.dtype(np.float64): "lse_rows<double>"}


CUPY_MODULE = RawModuleSource(
    code=_CUDA_SOURCE, options=("-std=c++14",), name_expressions=tuple(_CUDA_ENTRY.values())
)


@functools.cache
def _cupy_module():
    start = time.perf_counter()
    module = CUPY_MODULE.build()
    COMPILE_SECONDS["cupy"] = time.perf_counter() - start
    return module


def logsumexp_rows_cupy(x):
    """``(out (R,), softmax (R, C))`` on the GPU: one warp per row, grid-stride over the rows."""
    import cupy

    _check(x)
    x = cupy.ascontiguousarray(x)
    rows, cols = x.shape
    out = cupy.empty(rows, dtype=x.dtype)
    softmax = cupy.empty((rows, cols), dtype=x.dtype)
    if rows == 0:
        return out, softmax
    kernel = _cupy_module().get_function(_CUDA_ENTRY[x.dtype])
    warps_per_block = 8
    blocks = min((rows + warps_per_block - 1) // warps_per_block, 65535)
    kernel((blocks,), (32 * warps_per_block,), (x, out, softmax, np.int32(rows), np.int32(cols)))
    return out, softmax


# ---------------------------------------------------------------------------------------------------------
# The entry point.
# ---------------------------------------------------------------------------------------------------------

IMPLEMENTATIONS = {"numpy": logsumexp_rows_numpy, "numba": logsumexp_rows_numba, "cupy": logsumexp_rows_cupy}


def logsumexp_rows(x, *, backend=None):
    """``(log Σ_c exp(x_rc) per row, softmax over each row)`` for a 2-D ``x``; the version follows the rule
    of kernels/_routing.py (CuPy arrays go to CuPy, NumPy arrays to numba under the numba backend, else the
    reference) unless ``backend`` names one."""
    return pick_version(IMPLEMENTATIONS, "logsumexp_rows", (x,), backend)(x)
