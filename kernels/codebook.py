"""Nearest-codebook search: for each of N vectors z_n, the index of the closest of K codes e_k.

    k*(n) = argmin_k ‖z_n − e_k‖²,  ties broken towards the lowest index.

The reference expands ‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖² so the N×K dot products are one matrix product
(BLAS), and works through z in row chunks so the N×K distance matrix is never held whole.
"""

from __future__ import annotations

from tinyvae.backend import array_module

ROWS_PER_CHUNK = 4096


def nearest_code_numpy(z, codebook):
    """Reference: ``(indices, sq_dist)`` with indices (N,) int64 and sq_dist (N,) in z's dtype."""
    xp = array_module(z, codebook)
    n = z.shape[0]
    indices = xp.empty(n, dtype=xp.int64)
    sq_dist = xp.empty(n, dtype=z.dtype)
    code_sq_norms = (codebook * codebook).sum(axis=1)  # (K,)
    for start in range(0, n, ROWS_PER_CHUNK):
        rows = z[start : start + ROWS_PER_CHUNK]  # (n_chunk, D)
        # ‖z‖² is the same for every code of a row, so the argmin can leave it out.
        partial = code_sq_norms - 2.0 * (rows @ codebook.T)  # (n_chunk, K)
        best = partial.argmin(axis=1)
        indices[start : start + len(rows)] = best
        best_partial = xp.take_along_axis(partial, best[:, None], axis=1)[:, 0]
        sq_dist[start : start + len(rows)] = xp.maximum(best_partial + (rows * rows).sum(axis=1), 0)
    return indices, sq_dist
