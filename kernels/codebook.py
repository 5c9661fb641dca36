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

Memory. The only large temporary is one chunk of dot products; ``chunk_bytes`` (default 4 MiB) sets its size
and the chunk never exceeds :data:`EXTRA_BYTES_LIMIT` (16 MiB) together with the code norms.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from tinyvae.backend import array_module

try:  # numba is optional: without it the numba version is unavailable, nothing else changes.
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

EXTRA_BYTES_LIMIT = 16 * 2**20  # the bar for the working memory of one call
DEFAULT_CHUNK_BYTES = (
    4 * 2**20
)  # size of one chunk of dot products (fast versions); tuned in bench_codebook.py
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
# distance is never "< best", so NaNs are skipped rather than producing undefined behaviour.
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
        arg = np.zeros(m, dtype=np.int64)  # (m,) its code index
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
                arg[j] = k if take else arg[j]
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
    if numba is None:
        raise RuntimeError("nearest_code_numba: numba is not installed (pip install numba)")
    start = time.perf_counter()
    kernel = numba.njit(_NUMBA_SIGNATURES, cache=True, fastmath=_NUMBA_FASTMATH, boundscheck=False)(
        _fused_argmin
    )
    COMPILE_SECONDS["numba"] = time.perf_counter() - start
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
