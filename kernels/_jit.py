"""Compile a numba kernel with numba's on-disk cache when it can have one, and without it when it cannot.

Every kernel asks for ``cache=True``: compiling a kernel file takes 0.5-3 s, loading it from the cache a few
ms. numba keeps the cache in ``$NUMBA_CACHE_DIR`` when set, else beside the source (``kernels/__pycache__``),
else in the user's cache (``~/.cache/numba``), and uses the first of these it can write. On a read-only
install with no writable home (a container, a shared site-packages) it can write none, and then it refuses
the whole decorator: ``RuntimeError: cannot cache function '...': no locator available for file '...'``.
The cache only saves time, so we compile without it then, and say so once per process.
"""

from __future__ import annotations

import warnings

from tinyvae import backend as _backend


class KernelCacheWarning(RuntimeWarning):
    """numba cannot cache compiled kernels here, so every new process compiles them again."""


_warned = False  # one warning per process, not one per kernel


def cached_njit(function, signatures, **options):
    """``numba.njit(signatures, cache=True, **options)(function)``, compiled without the cache (and one
    :class:`KernelCacheWarning` per process) when numba finds no writable folder to cache it in."""
    numba = _backend.load_numba()
    try:
        return numba.njit(signatures, cache=True, **options)(function)
    except RuntimeError as error:
        if "no locator available" not in str(error):
            raise
        _warn_once(error)
    return numba.njit(signatures, **options)(function)


def _warn_once(error):
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"tinyvae.kernels: numba's kernel cache is off: it found no writable folder for it ({error}; it "
        "tried $NUMBA_CACHE_DIR, the kernels' __pycache__ and ~/.cache/numba). Kernels are compiled "
        "without it, so each new process compiles them again (a few seconds). To cache them, set "
        "NUMBA_CACHE_DIR to a writable folder.",
        KernelCacheWarning,
        stacklevel=3,
    )
