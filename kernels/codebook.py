"""Nearest-codebook search: for each of N vectors z_n, the index of the closest of K codes e_k.

    k*(n) = argmin_k ‖z_n − e_k‖²,  ties broken towards the lowest index,
    sq_dist(n) = ‖z_n − e_{k*(n)}‖².

Four versions sit side by side, each returning ``(indices, sq_dist)`` with indices (N,) int64:

1. :func:`nearest_code_reference`: the trusted one. Exact differences in float64, row chunk by row chunk;
   slow, used by the tests as the ground truth.
2. :func:`nearest_code_numpy`: the GEMM trick. ‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖², and ‖z‖² is the same for every
   code of a row, so the argmin only needs ‖e‖² − 2 z·e; the N×K dot products are one matrix product (BLAS).
3. :func:`nearest_code_numba`: the same GEMM on row chunks, then one fused numba pass over each chunk's K×n
   dot products that adds the code norms and keeps a running (min, argmin) per row. NumPy's version reads the
   chunk four times (scale, add, argmin, gather); this reads it once, from cache.
4. :func:`nearest_code_cupy`: cuBLAS for the GEMM plus a fused reduction kernel (one warp per row).
   Compiled with flush-to-zero (``-ftz=true``, kernels/_cuda_source.py): in float32 a squared distance
   below 1.18e-38 is 0 on the GPU.

Why the fused pass is laid out (K, n) and not (n, K): a per-row argmin over k is a *reduction*, and LLVM will
not vectorise a floating-point min/argmin reduction unless the function carries the ``no-nans`` attribute,
which numba does not set (we checked the assembly: no packed ``vcmpps``). Computing the GEMM as
``codebook @ rows.T`` puts the n rows of one code next to each other, so the inner loop runs *across rows*:
``best[j] = v if v < best[j] else best[j]`` is elementwise, not a reduction, and compiles to packed compares
and blends (about 0.3 ns per distance instead of 1 ns).

Ties and rounding. All fast versions compare ``‖e‖² − 2 z·e`` in the input dtype, so two codes whose true
distances differ by less than that rounding (about ``D · eps · (‖z‖ + ‖e‖)²``) may come out in either order;
exact ties always go to the lowest index because the scan keeps the first strict minimum. ``sq_dist`` is not
taken from the expansion (which cancels badly when z is close to its code, the usual case in a trained VQ-VAE)
but recomputed directly as Σ_d (z_d − e_d)² for the chosen code: relative error about D · eps, and never
negative.

Non-finite codes. A NaN or ±inf in the codebook makes the versions disagree: NumPy's argmin returns the
first NaN distance (so a NaN code wins every row), the numba scan never takes a NaN as "< best" (so it is
skipped, unless it is code 0, where the scan starts), and in the CuPy warp reduction a lane that starts on
the NaN code keeps it, so whether it wins depends on the lane. :func:`nearest_code`, the entry point every
caller goes through, therefore refuses such a codebook before any version runs (one ``isfinite`` pass over
the K·D codes: 1.2 µs at K = 64, D = 20 against 11.5 µs for the search of 128 rows, 3.0 µs at K = 512,
D = 64 against 61 µs); the versions themselves do not check.

Memory. The only large temporary is one chunk of dot products; ``chunk_bytes`` (default 4 MiB) sets its size
and the chunk never exceeds :data:`EXTRA_BYTES_LIMIT` (16 MiB) together with the code norms.
"""

from __future__ import annotations

import functools
import time

import numpy as np
from tinyvae.kernels._cuda_source import RawModuleSource
from tinyvae.kernels._jit import compile_kernels
from tinyvae.kernels._routing import pick_version

from tinyvae.backend import array_module

# The fused pass's numba.prange: numba is imported on first use of the numba version (compile_kernels sets
# this, through backend.load_numba, which also picks numba's threading layer), so importing this file
# neither imports numba nor compiles anything.
numba = None

# The working-memory bar for one call (≤ 16 MiB extra; benchmarks/RESULTS.md, "Nearest-codebook search").
EXTRA_BYTES_LIMIT = 16 * 2**20
# The size of one chunk of dot products (fast versions); tuned in bench_codebook.py.
DEFAULT_CHUNK_BYTES = 4 * 2**20
EPILOGUE_BLOCK_ROWS = 256  # rows per block in the fused pass: best + arg of a block stay in L1


def _check_inputs(z, codebook) -> None:
    """Raise a ValueError/TypeError naming the argument, the shape received and what was expected."""
    for name, a, expected in (("z", z, "(N, D)"), ("codebook", codebook, "(K, D)")):
        if a.ndim != 2:
            raise ValueError(f"nearest_code: {name} has shape {tuple(a.shape)} but must be 2-D {expected}")
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(
                f"nearest_code: {name} has dtype {a.dtype} (shape {tuple(a.shape)}) "
                "but must be float32 or float64"
            )
    if z.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"nearest_code: z has shape {tuple(z.shape)} (D = {z.shape[1]}) but codebook has shape "
            f"{tuple(codebook.shape)} (D = {codebook.shape[1]}); both must have the same vector size D"
        )
    if codebook.shape[0] == 0:
        raise ValueError(
            f"nearest_code: codebook has shape {tuple(codebook.shape)} "
            "but must hold at least one code (K >= 1)"
        )
    if z.dtype != codebook.dtype:
        raise TypeError(
            f"nearest_code: z has dtype {z.dtype} but codebook has dtype {codebook.dtype}; "
            "pass both in the same dtype"
        )


def _chunk_rows(n: int, k: int, itemsize: int, chunk_bytes: int) -> int:
    """Rows per chunk so that one (K, rows) block of dot products plus the code norms fit the budget."""
    budget = min(chunk_bytes, EXTRA_BYTES_LIMIT - k * itemsize)
    return int(max(1, min(n, budget // (k * itemsize))))


# ---------------------------------------------------------------------------------------------------------
# 1. Trusted reference: exact differences in float64.
# ---------------------------------------------------------------------------------------------------------


def nearest_code_reference(z, codebook):
    """Brute force in float64: ``(indices int64 (N,), sq_dist float64 (N,))``; ties go to the lowest index.

    Forms z_n − e_k for every pair (a (rows, K, D) float64 block, at most 16 MiB at a time), so there is no
    cancellation; ``argmin`` returns the first minimum, which is the lowest index.
    """
    z = np.asarray(z)
    codebook = np.asarray(codebook)
    _check_inputs(z, codebook)
    z64 = z.astype(np.float64, copy=False)
    codes64 = codebook.astype(np.float64, copy=False)
    n, (k, d) = z.shape[0], codebook.shape
    indices = np.empty(n, dtype=np.int64)
    sq_dist = np.empty(n, dtype=np.float64)
    rows_per_chunk = max(1, 2**21 // max(1, k * d))  # 2**21 float64 = 16 MiB
    for start in range(0, n, rows_per_chunk):
        diff = z64[start : start + rows_per_chunk, None, :] - codes64[None, :, :]  # (rows, K, D)
        dist = np.einsum("nkd,nkd->nk", diff, diff)  # (rows, K)
        best = dist.argmin(axis=1)  # (rows,)
        indices[start : start + len(best)] = best
        sq_dist[start : start + len(best)] = dist[np.arange(len(best)), best]
    return indices, sq_dist


# ---------------------------------------------------------------------------------------------------------
# 2. NumPy: the GEMM trick in row chunks (also runs on CuPy arrays through xp).
# ---------------------------------------------------------------------------------------------------------


def nearest_code_numpy(z, codebook, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """GEMM trick in row chunks: ``(indices int64 (N,), sq_dist (N,) in z's dtype)``.

    One (n_chunk, K) buffer per chunk, updated in place, so the working memory follows ``chunk_bytes``.
    """
    xp = array_module(z, codebook)
    _check_inputs(z, codebook)
    n, k = z.shape[0], codebook.shape[0]
    indices = xp.empty(n, dtype=xp.int64)
    sq_dist = xp.empty(n, dtype=z.dtype)
    code_sq_norms = (codebook * codebook).sum(axis=1)  # (K,)
    rows_per_chunk = _chunk_rows(n, k, z.itemsize, chunk_bytes)
    for start in range(0, n, rows_per_chunk):
        rows = z[start : start + rows_per_chunk]  # (n_chunk, D)
        # ‖z‖² is the same for every code of a row, so the argmin can leave it out.
        partial = rows @ codebook.T  # (n_chunk, K)
        partial *= -2.0
        partial += code_sq_norms  # ‖e‖² − 2 z·e
        best = partial.argmin(axis=1)  # (n_chunk,) first minimum = lowest index
        indices[start : start + len(rows)] = best
        diff = rows - codebook[best]  # (n_chunk, D): direct distance, no cancellation
        sq_dist[start : start + len(rows)] = (diff * diff).sum(axis=1)
    return indices, sq_dist


# ---------------------------------------------------------------------------------------------------------
# 3. numba: BLAS GEMM on row chunks + one fused pass (code norms + argmin + exact distance).
# ---------------------------------------------------------------------------------------------------------

# rows (n, D) any layout, dots (K, n) C-contiguous, codebook (K, D) any layout, code norms (K,), outputs (n,).
_NUMBA_SIGNATURES = [
    f"void({t}[:, :], {t}[:, ::1], {t}[:, :], {t}[::1], int64[::1], {t}[::1])" for t in ("float32", "float64")
]
# reassoc lets the Σ_d (z − e)² loop use packed adds; nsz/contract are harmless here. No nnan/ninf: a NaN
# distance is never "< best", so NaNs are skipped rather than producing undefined behaviour (the entry point
# refuses non-finite codebooks anyway, see the module docstring).
_NUMBA_FASTMATH = {"reassoc", "nsz", "contract"}


def _fused_argmin(rows, dots, codebook, code_sq_norms, out_idx, out_sq):
    """For each row j: argmin_k (‖e_k‖² − 2 dots[k, j]), then out_sq[j] = Σ_d (rows[j, d] − e_best[d])².

    ``dots`` is (K, n): for a fixed code k the n rows are contiguous, so the inner loop below runs across rows
    and is elementwise (vectorised), not a reduction. ``prange`` over blocks is a plain range unless compiled
    with ``parallel=True`` (the benchmark measures both; the serial pass is what ships, see RESULTS.md).
    """
    k_codes, n = dots.shape
    d_dim = rows.shape[1]
    n_blocks = (n + EPILOGUE_BLOCK_ROWS - 1) // EPILOGUE_BLOCK_ROWS
    for b in numba.prange(n_blocks):
        lo = b * EPILOGUE_BLOCK_ROWS
        m = min(EPILOGUE_BLOCK_ROWS, n - lo)
        best = np.empty(m, dtype=dots.dtype)  # (m,) running minimum of ‖e‖² − 2 z·e
        # int32 indices: eight of them fill a vector register like eight float32 distances, so the
        # compare-and-blend below runs 8-wide for both (int64 took two blends; pass 15% faster at K = 512)
        arg = np.zeros(m, dtype=np.int32)  # (m,) its code index
        c0 = code_sq_norms[0]
        for j in range(m):
            x = dots[0, lo + j]
            best[j] = c0 - (x + x)  # x + x == 2x exactly, and keeps the dtype
        for k in range(1, k_codes):
            ck = code_sq_norms[k]
            for j in range(m):
                x = dots[k, lo + j]
                v = ck - (x + x)
                take = v < best[j]  # strict: an exact tie keeps the earlier (lower) index
                best[j] = v if take else best[j]
                arg[j] = np.int32(k) if take else arg[j]
        for j in range(m):
            a = arg[j]
            s = 0.0  # float64 accumulator: the distance itself is exact to about D * eps
            for dd in range(d_dim):
                t = rows[lo + j, dd] - codebook[a, dd]
                s += t * t
            out_idx[lo + j] = a
            out_sq[lo + j] = s


@functools.cache
def _numba_kernel():
    """Compile (or load from numba's on-disk cache) the fused pass; called on first use, never at import."""
    (kernel,) = compile_kernels(
        "nearest_code_numba",
        [(_fused_argmin, _NUMBA_SIGNATURES)],
        seconds=COMPILE_SECONDS,
        fastmath=_NUMBA_FASTMATH,
        boundscheck=False,
    )
    return kernel


COMPILE_SECONDS: dict[str, float] = {}  # first-use compile/load time per backend, read by the benchmark


def nearest_code_numba(z, codebook, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES, kernel=None):
    """BLAS GEMM on row chunks + fused numba pass: ``(indices int64 (N,), sq_dist (N,) in z's dtype)``.

    ``kernel`` swaps the compiled pass (the benchmark passes a ``parallel=True`` build of the same function).
    """
    z = np.asarray(z)
    codebook = np.asarray(codebook)
    _check_inputs(z, codebook)
    kernel = _numba_kernel() if kernel is None else kernel
    n, k = z.shape[0], codebook.shape[0]
    if k > np.iinfo(np.int32).max:  # the pass keeps code indices in int32
        raise ValueError(f"nearest_code_numba: codebook has {k} codes; at most 2**31 - 1 are supported")
    indices = np.empty(n, dtype=np.int64)
    sq_dist = np.empty(n, dtype=z.dtype)
    if n == 0:
        return indices, sq_dist
    code_sq_norms = np.einsum("kd,kd->k", codebook, codebook)  # (K,)
    rows_per_chunk = _chunk_rows(n, k, z.itemsize, chunk_bytes)
    buffer = np.empty(k * rows_per_chunk, dtype=z.dtype)  # the one large temporary
    for start in range(0, n, rows_per_chunk):
        stop = min(start + rows_per_chunk, n)
        rows = z[start:stop]  # (n_chunk, D)
        dots = buffer[: k * (stop - start)].reshape(k, stop - start)  # (K, n_chunk), C-contiguous
        np.matmul(codebook, rows.T, out=dots)
        kernel(rows, dots, codebook, code_sq_norms, indices[start:stop], sq_dist[start:stop])
    return indices, sq_dist


# ---------------------------------------------------------------------------------------------------------
# 4. CuPy: cuBLAS GEMM on row chunks + one fused reduction kernel.
#    Run on hardware (an NVIDIA H100 and an H200, CuPy 14.2): equal to the reference on every drawn case
#    (tests/test_kernel_codebook.py; benchmarks/RESULTS.md, "GPU check").
# ---------------------------------------------------------------------------------------------------------

# One warp per row of dots (n, K) (row-major, as cuBLAS writes rows @ codebook.T), rows visited by a
# grid-stride loop. Each lane scans codes lane, lane + 32, ... in increasing order keeping the first strict
# minimum; the shuffle reduction then prefers the lower index on equal values, so ties go to the lowest index
# exactly as in the CPU versions. The same warp then sums (z_d − e_d)² for the chosen code.
_CUPY_SOURCE = r"""
template <typename T>
__device__ void fused_argmin(const T* __restrict__ dots, const T* __restrict__ code_sq_norms,
                             const T* __restrict__ rows, const T* __restrict__ codebook,
                             const int n, const int k, const int d,
                             long long* __restrict__ out_idx, T* __restrict__ out_sq)
{
    const int lane = threadIdx.x % 32;
    const int warps_per_block = blockDim.x / 32;
    const int row_stride = gridDim.x * warps_per_block;
    for (int row = blockIdx.x * warps_per_block + threadIdx.x / 32; row < n; row += row_stride) {
        const T* drow = dots + (long long)row * k;
        T best = 0;
        int arg = k;  // k means "no code seen yet"
        for (int j = lane; j < k; j += 32) {
            const T x = drow[j];
            const T v = code_sq_norms[j] - (x + x);
            if (arg == k || v < best) { best = v; arg = j; }
        }
        for (int offset = 16; offset > 0; offset /= 2) {
            const T other_best = __shfl_down_sync(0xffffffffu, best, offset);
            const int other_arg = __shfl_down_sync(0xffffffffu, arg, offset);
            if (other_arg < k && (arg == k || other_best < best || (other_best == best && other_arg < arg))) {
                best = other_best;
                arg = other_arg;
            }
        }
        arg = __shfl_sync(0xffffffffu, arg, 0);
        if (arg == k) arg = 0;  // unreachable for k >= 1; keeps the index in range
        const T* zrow = rows + (long long)row * d;
        const T* code = codebook + (long long)arg * d;
        T s = 0;
        for (int j = lane; j < d; j += 32) {
            const T t = zrow[j] - code[j];
            s += t * t;
        }
        for (int offset = 16; offset > 0; offset /= 2) s += __shfl_down_sync(0xffffffffu, s, offset);
        if (lane == 0) {
            out_idx[row] = arg;
            out_sq[row] = s;
        }
    }
}

extern "C" __global__ void fused_argmin_f32(const float* dots, const float* code_sq_norms, const float* rows,
                                            const float* codebook, int n, int k, int d,
                                            long long* out_idx, float* out_sq)
{
    fused_argmin<float>(dots, code_sq_norms, rows, codebook, n, k, d, out_idx, out_sq);
}

extern "C" __global__ void fused_argmin_f64(const double* dots, const double* code_sq_norms,
                                            const double* rows, const double* codebook, int n, int k, int d,
                                            long long* out_idx, double* out_sq)
{
    fused_argmin<double>(dots, code_sq_norms, rows, codebook, n, k, d, out_idx, out_sq);
}
"""
CUPY_MODULE = RawModuleSource(
    code=_CUPY_SOURCE, options=("--std=c++11",), entry_points=("fused_argmin_f32", "fused_argmin_f64")
)
_CUPY_WARPS_PER_BLOCK = 8
_CUPY_MAX_BLOCKS = 65535  # the grid-stride loop covers any remaining rows


@functools.cache
def _cupy_kernels():
    """Compile the RawModule on first use (CuPy also caches the binary on disk); never at import."""
    start = time.perf_counter()
    module = CUPY_MODULE.build()
    kernels = {
        np.dtype(np.float32): module.get_function("fused_argmin_f32"),
        np.dtype(np.float64): module.get_function("fused_argmin_f64"),
    }
    COMPILE_SECONDS["cupy"] = time.perf_counter() - start
    return kernels


def nearest_code_cupy(z, codebook, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """cuBLAS GEMM on row chunks + fused argmin kernel, on CuPy arrays: ``(indices int64, sq_dist)``."""
    import cupy

    _check_inputs(z, codebook)
    kernel = _cupy_kernels()[np.dtype(z.dtype)]
    n, (k, d) = z.shape[0], codebook.shape
    indices = cupy.empty(n, dtype=cupy.int64)
    sq_dist = cupy.empty(n, dtype=z.dtype)
    if n == 0:
        return indices, sq_dist
    codebook = cupy.ascontiguousarray(codebook)  # (K, D)
    code_sq_norms = (codebook * codebook).sum(axis=1)  # (K,)
    rows_per_chunk = _chunk_rows(n, k, z.itemsize, chunk_bytes)
    buffer = cupy.empty(k * rows_per_chunk, dtype=z.dtype)
    for start in range(0, n, rows_per_chunk):
        stop = min(start + rows_per_chunk, n)
        rows = cupy.ascontiguousarray(z[start:stop])  # (n_chunk, D), the kernel indexes it densely
        dots = buffer[: (stop - start) * k].reshape(stop - start, k)  # (n_chunk, K)
        cupy.matmul(rows, codebook.T, out=dots)
        blocks = min(-(-(stop - start) // _CUPY_WARPS_PER_BLOCK), _CUPY_MAX_BLOCKS)
        kernel(
            (blocks,),
            (32 * _CUPY_WARPS_PER_BLOCK,),
            (
                dots,
                code_sq_norms,
                rows,
                codebook,
                np.int32(stop - start),
                np.int32(k),
                np.int32(d),
                indices[start:stop],
                sq_dist[start:stop],
            ),
        )
    return indices, sq_dist


# ---------------------------------------------------------------------------------------------------------
# The entry point the ops call.
# ---------------------------------------------------------------------------------------------------------

IMPLEMENTATIONS = {
    "numpy": nearest_code_numpy,
    "numba": nearest_code_numba,
    "cupy": nearest_code_cupy,
}


def check_finite_codebook(codebook, op="nearest_code"):
    """Raise a ValueError naming ``op`` and the first code holding NaN or ±inf (see the module docstring)."""
    xp = array_module(codebook)
    finite = xp.isfinite(codebook)
    if bool(finite.all()):
        return
    bad = int(xp.flatnonzero(~finite.all(axis=1))[0])
    shown = ", ".join(f"{v:.4g}" for v in codebook[bad][:4].tolist()) + (
        ", ..." if codebook.shape[1] > 4 else ""
    )
    raise ValueError(
        f"{op}: the codebook holds NaN or inf (first in code {bad} of {codebook.shape[0]}: [{shown}]); the "
        "nearest-code search would treat it differently on each backend, so it is refused. A non-finite code "
        "usually means training diverged (lower the learning rate) or a code was set by hand"
    )


def nearest_code(z, codebook, *, backend: str | None = None, op: str = "nearest_code"):
    """Nearest code for each row of z: ``(indices int64 (N,), sq_dist (N,) in z's dtype)``.

    ``backend=None`` follows :func:`tinyvae.backend.current` (CuPy arrays always go to the CuPy version, NumPy
    arrays to numba under the numba backend, else to NumPy); a name from :data:`IMPLEMENTATIONS` forces one.
    A codebook holding NaN or ±inf is refused (ValueError naming ``op``, the caller) on every backend.
    """
    search = pick_version(IMPLEMENTATIONS, "nearest_code", (z, codebook), backend)
    if getattr(codebook, "ndim", 0) == 2 and getattr(codebook, "dtype", None) in (np.float32, np.float64):
        check_finite_codebook(codebook, op)  # (shape and dtype mistakes are named by the version's own check)
    return search(z, codebook)
