"""Compiling the numba kernels: one helper for every kernel file, and the on-disk cache's fallback.

:func:`compile_kernels` is what each kernel file's ``_numba_kernel()`` calls on first use: it imports numba
(never at import time, so ``import tinyvae`` stays free of it) and wraps the loops, with their explicit
float32/float64 signatures, in :class:`PerDtype` kernels, which compile each element type on its first
call and record how long that took for the benchmark.

:func:`cached_njit` compiles one function with numba's on-disk cache when it can have one, and without it
when it cannot. Every kernel asks for ``cache=True``: compiling a kernel file takes 0.5-3 s, loading it
from the cache a few ms. numba keeps the cache in ``$NUMBA_CACHE_DIR`` when set, else beside the source
(``kernels/__pycache__``), else in the user's cache (``~/.cache/numba``), and uses the first of these it
can write. On a read-only install with no writable home (a container, a shared site-packages) it can write
none, and then it refuses the whole decorator: ``RuntimeError: cannot cache function '...': no locator
available for file '...'``. The cache only saves time, so we compile without it then, and say so once per
process.
"""

from __future__ import annotations

import threading
import time
import warnings

from tinyvae import backend as _backend


class KernelCacheWarning(RuntimeWarning):
    """numba finds no writable folder for its kernel cache, so each new process compiles the kernels again."""


_warned = False  # one warning per process, not one per kernel

# A first run compiles every kernel it uses (1-2 s for the default VAE on a 2-vCPU machine, more on a slow
# one) inside its first training step; a command that goes quiet that long looks hung. Whoever shows
# progress (the `tinyvae` command) sets ``notice`` to a callable, which is called once per process, with
# :data:`COMPILE_NOTICE`, as soon as compiling has taken NOTICE_AFTER_SECONDS in all. A library user sees
# nothing unless they set it too.
NOTICE_AFTER_SECONDS = 1.0
COMPILE_NOTICE = "compiling tinyvae's kernels for this machine (once: numba caches them for the next runs)..."
notice = None
_compiling = {"seconds": 0.0, "noticed": False}  # this process's compile time so far, and whether told


def _give_notice():
    if notice is not None and not _compiling["noticed"]:
        _compiling["noticed"] = True
        notice(COMPILE_NOTICE)


def _notice_timer():
    """A started timer that gives the notice when this process's compiling reaches NOTICE_AFTER_SECONDS,
    or None (no one listening, or already told)."""
    if notice is None or _compiling["noticed"]:
        return None
    timer = threading.Timer(max(0.0, NOTICE_AFTER_SECONDS - _compiling["seconds"]), _give_notice)
    timer.daemon = True
    timer.start()
    return timer


def compile_kernels(owner: str, functions, *, seconds: dict, key: str = "numba", **options) -> tuple:
    """Each ``(function, signatures)`` of ``functions`` as a :class:`PerDtype` kernel compiled with
    :func:`cached_njit` and ``options``, in order; ``seconds[key]`` adds up the seconds their compiling takes.

    ``owner`` names the kernel in the error raised when numba does not import (raised here, at the kernel
    file's first use). A loop that says ``numba.prange`` names the module global ``numba``, which numba looks
    up when it compiles the function: a kernel file that uses it declares ``numba = None`` (so importing the
    file imports no numba) and this fills it in first."""
    try:
        numba = _backend.load_numba()
    except ImportError as error:
        raise ImportError(
            f"{owner}: the numba version needs numba, which does not import "
            f"({type(error).__name__}: {error}); pip install numba, or run the NumPy version "
            "(TINYVAE_BACKEND=numpy)"
        ) from error
    seconds.setdefault(key, 0.0)
    kernels = []
    for function, signatures in functions:
        if "numba" in function.__globals__:
            function.__globals__["numba"] = numba
        kernels.append(PerDtype(function, signatures, options, seconds, key))
    return tuple(kernels)


class PerDtype:
    """A numba kernel compiled for one element type at a time, the first time it is called with it.

    The signatures are grouped by the element type of their first array argument ("float32" in
    ``void(float32[::1], ...)``); a call with a first argument of dtype float32 compiles (or loads from the
    cache) the float32 group only. A float32 training run never compiles the float64 versions the float64
    checks use, which halves a first run's compiling (the default VAE's kernels: 2.4 s for both types
    against 1.2 s for float32 alone, measured on the 2-vCPU machine of benchmarks/RESULTS.md)."""

    def __init__(self, function, signatures, options, seconds, key):
        self.function, self.options, self.seconds, self.key = function, options, seconds, key
        self.groups = {}
        for signature in signatures:
            self.groups.setdefault(_first_array_type(signature), []).append(signature)
        self.by_dtype = {}  # {numpy dtype: numba dispatcher}, filled on each dtype's first call

    def __call__(self, *args):
        try:  # the hot path: one dict lookup by the dtype object (its .name builds a string each time)
            return self.by_dtype[args[0].dtype](*args)
        except KeyError:
            pass
        dtype = args[0].dtype
        self.by_dtype[dtype] = self._compile(dtype.name)
        return self.by_dtype[dtype](*args)

    def _compile(self, dtype):
        if dtype not in self.groups:
            raise TypeError(
                f"{self.function.__name__}: compiled for {sorted(self.groups)} arrays, called with {dtype}"
            )
        start = time.perf_counter()
        timer = _notice_timer()
        try:
            kernel = cached_njit(self.function, self.groups[dtype], **self.options)
        finally:
            if timer is not None:
                timer.cancel()
            elapsed = time.perf_counter() - start
            self.seconds[self.key] += elapsed
            _compiling["seconds"] += elapsed
        return kernel

    @property
    def compiled(self):
        """{dtype name: numba dispatcher} of the element types compiled so far."""
        return {dtype.name: kernel for dtype, kernel in self.by_dtype.items()}


def _first_array_type(signature):
    """The element type of the first array in a signature string: "float32" for "void(float32[::1], ...)"."""
    return signature.split("(", 1)[1].split("[", 1)[0].strip()


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
        stacklevel=4,  # the kernel file whose _numba_kernel() compiled (through compile_kernels)
    )
