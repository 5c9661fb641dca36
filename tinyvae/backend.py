"""Which backend runs the hot loops, and which array module holds tensor data.

Three backends:

* ``numpy``: plain NumPy everywhere; the reference every kernel is checked against.
* ``numba``: NumPy arrays, with the kernels in ``tinyvae.kernels`` compiled by numba for the CPU.
* ``cupy``: CuPy arrays on a GPU, with CuPy kernels; tensor data stays on the GPU for the whole step.

The choice is made once, lazily (importing tinyvae imports neither numba nor CuPy and compiles nothing),
from ``TINYVAE_BACKEND=auto|cpu|gpu|numpy|numba|cupy`` (default ``auto``), and can be changed with :func:`use`
or the CLI's ``--device cpu|gpu``. ``cpu`` is numba when it imports, else NumPy; ``gpu`` is CuPy.
``auto`` is CuPy only when a GPU *works*: CuPy imports, sees a device, and a tiny kernel compiles and runs
on it with the right result (a device count alone would pick CuPy on a machine whose CUDA toolkit cannot
compile, and training would fail at its first kernel); else it is ``cpu``. :func:`info` says which
backend runs and why, and why CuPy was not chosen.

Op bodies never branch on the backend: they are written once against the NumPy API and get their
module from their inputs with :func:`array_module` (the ``xp`` idiom, as in chainer). Only the kernel
registry (``tinyvae.kernels``) looks at :func:`current`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import os
import sys
import threading

import numpy

from tinyvae import blas_tuning

BACKENDS = ("numpy", "numba", "cupy")
CPU_CHOICES = ("cpu", "numpy", "numba")  # requests that never need CuPy
DEVICE_CHOICES = ("auto", "cpu", "gpu")  # the CLI's --device
ENVIRONMENT_VARIABLE = "TINYVAE_BACKEND"
GPU_INSTALL_HINT = (
    "pip install 'tinyvae[gpu12]' for a CUDA 12 driver or 'tinyvae[gpu13]' for CUDA 13 (CuPy with the CUDA "
    "toolkit pieces it loads at run time; see the README, 'GPU')"
)

_lock = threading.Lock()
_selected = {}  # {"name": ..., "reason": ...} once chosen


class BackendError(RuntimeError):
    """An unknown or unavailable backend was asked for."""


def load_numba():
    """Import numba the way tinyvae wants it, or raise ImportError. Kernels import numba only through here.

    Threading layer: OpenMP first when numba has it, else workqueue (a user's own NUMBA_THREADING_LAYER or
    priority is respected). Measured on the 2-vCPU Zen 4 of benchmarks/RESULTS.md ("Training step against
    PyTorch", the Adam paragraph): launching a ``prange`` kernel costs ~2 µs under OpenMP and 70-100 µs
    under workqueue, which sleeps its threads; at ten parameters an Adam step that is 1 ms. The catch with
    OpenMP: its threads spin after a parallel region, and beside a multi-threaded OpenBLAS on 2 cores that
    made a training step 3-5x slower (the same trap in "Nearest-codebook search": a parallel build of the
    fused pass took 249-276 ms against the serial one's 39 ms). So memory-bound kernels run on one
    thread (see :func:`numba_threads`). Adam, the kernel of that measurement, no longer uses ``prange`` at
    all: its plain loop vectorises once compiled with NumPy's error model (kernels/adam.py).
    """
    os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")
    import numba

    return numba


@contextlib.contextmanager
def numba_threads(count):
    """Run numba parallel regions inside the block on ``count`` threads (restored afterwards)."""
    numba = load_numba()
    previous = numba.get_num_threads()
    wanted = min(count, numba.config.NUMBA_NUM_THREADS)
    if wanted == previous:  # already so (e.g. inside an outer block): setting it again costs ~5 µs
        yield
        return
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _probe_numba():
    """(True, version) if numba imports, else (False, why not)."""
    try:
        numba = load_numba()
    except Exception as error:  # ImportError, or a broken llvmlite
        return False, f"numba does not import ({type(error).__name__}: {error})"
    return True, numba.__version__


@functools.cache
def _probe_cupy():
    """(True, what ran) if CuPy imports, sees a GPU, and compiles and runs a tiny kernel there with the right
    result; else (False, why not). Cached: the first call compiles (CuPy keeps the binary on disk)."""
    try:
        import cupy
    except Exception as error:
        return (
            False,
            f"cupy does not import ({type(error).__name__}: {error}); to use a GPU, {GPU_INSTALL_HINT}",
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:
        return False, f"cupy {cupy.__version__} imports but finds no GPU ({type(error).__name__}: {error})"
    if count < 1:
        return False, f"cupy {cupy.__version__} imports but finds no GPU"
    try:
        square_plus_one = cupy.ElementwiseKernel("T x", "T y", "y = x * x + (T)1", "tinyvae_backend_probe")
        result = square_plus_one(cupy.arange(4, dtype=cupy.float32)).get()
        device = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    except Exception as error:
        message = " ".join(str(error).split())[:300]
        return False, (
            f"cupy {cupy.__version__} sees {count} GPU(s) but could not compile and run a test kernel "
            f"({type(error).__name__}: {message}); the CUDA toolkit pieces CuPy loads (NVRTC, ...) are "
            f"missing or do not match the driver: {GPU_INSTALL_HINT}"
        )
    if not numpy.array_equal(result, [1.0, 2.0, 5.0, 10.0]):
        return False, f"cupy {cupy.__version__}: a test kernel ran on the GPU but returned {result.tolist()}"
    device = device.decode() if isinstance(device, bytes) else str(device)
    return True, f"{cupy.__version__} on {device} (a test kernel compiled and ran)"


_PROBES = {"numpy": lambda: (True, numpy.__version__), "numba": _probe_numba, "cupy": _probe_cupy}


def available():
    """{backend: (is_available, version or the reason it is not)} for every backend."""
    return {name: _PROBES[name]() for name in BACKENDS}


def _requested():
    """What $TINYVAE_BACKEND asks for, normalised ("auto" when unset or empty)."""
    return os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() or "auto"


def _best_cpu_backend():
    ok, detail = _PROBES["numba"]()
    return ("numba", f"numba {detail}") if ok else ("numpy", f"numpy (numba is unavailable: {detail})")


def _choose(requested, source):
    """(backend, the reason it was chosen) for a request: a backend's name, "auto", "cpu" or "gpu"."""
    if requested not in (*BACKENDS, "auto", "cpu", "gpu"):
        raise BackendError(
            f"{source}: unknown backend {requested!r}; choose one of 'auto', "
            + ", ".join(map(repr, BACKENDS))
            + ", or 'cpu' (numba if it imports, else numpy) or 'gpu' (cupy)"
        )
    if requested == "auto":
        ok, detail = _PROBES["cupy"]()
        if ok:
            return "cupy", f"auto: cupy {detail}"
        name, cpu_detail = _best_cpu_backend()
        return (
            name,
            f"auto: {cpu_detail}; not cupy: {detail.split(';')[0]}",
        )  # info()'s cupy line has the rest
    if requested == "cpu":
        name, cpu_detail = _best_cpu_backend()
        return name, f"{source} asked for the CPU: {cpu_detail}"
    backend = "cupy" if requested == "gpu" else requested
    ok, detail = _PROBES[backend]()
    if not ok:
        usable = [name for name, (is_ok, _) in available().items() if is_ok]
        raise BackendError(
            f"{source}: backend {backend!r} is not available: {detail}. Available here: {', '.join(usable)}"
        )
    return backend, f"{source} asked for {backend}"


def current():
    """The name of the backend in use (chosen on first call from $TINYVAE_BACKEND, default auto)."""
    if not _selected:
        with _lock:
            if not _selected:
                requested = _requested()
                name, reason = _choose(requested, f"{ENVIRONMENT_VARIABLE}={requested}")
                _selected.update(name=name, reason=reason)
    return _selected["name"]


def use(name, source=None):
    """Switch backend (``'auto'``, ``'cpu'``, ``'gpu'``, ``'numpy'``, ``'numba'`` or ``'cupy'``); returns the
    backend now in use. ``source`` names who asked, for :func:`info` and errors (the CLI passes
    ``"--device gpu"``).

    Tensors made before the switch keep their arrays: switch before building a model.
    """
    chosen, reason = _choose(str(name).lower(), source or f"tv.backend.use({name!r})")
    with _lock:
        _selected.update(name=chosen, reason=reason)
    return chosen


@functools.cache
def _cupy_installed():
    """Whether CuPy is installed at all, looked up once (a find_spec scans sys.path: ~30 µs)."""
    return importlib.util.find_spec("cupy") is not None


def default_array_module():
    """The module new tensors are created in: CuPy under the cupy backend, else NumPy (or the simulated
    device's module, inside :func:`simulated_device`)."""
    if _simulated_device:
        return _simulated_device["module"]
    if not _selected and (not _cupy_installed() or _requested() in CPU_CHOICES):
        return numpy  # no CuPy, or a CPU backend asked for: NumPy whatever gets chosen, nothing imported yet
    if current() == "cupy":
        import cupy

        return cupy
    return numpy


def array_module(*arrays):
    """The array module of ``arrays``: CuPy if any of them is a CuPy array, else NumPy (or the simulated
    device's module, inside :func:`simulated_device`, if any of them is one of its arrays)."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy

            return cupy
    if _simulated_device and any(isinstance(a, _simulated_device["array_type"]) for a in arrays):
        return _simulated_device["module"]
    return numpy


_simulated_device = {}  # {"module": ..., "array_type": ...} inside simulated_device(), else empty


@contextlib.contextmanager
def simulated_device(module, array_type):
    """Inside the block, arrays of ``array_type`` are device arrays of the array module ``module``.

    For the test suite only (``tests/strict_device.py``): there, ``array_type`` wraps a NumPy array but
    refuses implicit conversion to NumPy and mixing with NumPy arrays, as CuPy does, so the tests catch on
    a CPU the host/device mistakes that would crash on a GPU. Inside the block :func:`array_module` returns
    ``module`` for those arrays, :func:`default_array_module` returns ``module`` (new tensors are made on
    the pretend device), :func:`to_device` and :func:`to_host` copy to and from it (``module.asarray``,
    ``.get()``), and the kernels run their NumPy versions on it (``kernels/_routing.py``).
    """
    if _simulated_device:
        raise RuntimeError("simulated_device: a simulated device is already active; blocks do not nest")
    _simulated_device.update(module=module, array_type=array_type)
    try:
        yield module
    finally:
        _simulated_device.clear()


def simulated_array_module():
    """The array module of the active :func:`simulated_device`, or None outside one."""
    return _simulated_device.get("module")


def to_device(array):
    """``array`` in the current backend's array module (copied to or from the GPU only if needed)."""
    xp = default_array_module()
    if array_module(array) is xp:
        return xp.asarray(array)  # no copy for an array; a NumPy scalar becomes a 0-d array
    if xp is numpy:
        return array.get()
    return xp.asarray(array)


def to_host(array):
    """``array`` as a NumPy array in host memory (copied from the GPU when it is a CuPy array).

    The one place device data crosses to the host: figures, metrics, checkpoints and evaluation output.
    Anything that is not a device array (CuPy's, or the :func:`simulated_device`'s) is returned as
    ``numpy.asarray`` gives it.
    """
    if array_module(array) is not numpy:
        return array.get()
    return numpy.asarray(array)


def threads():
    """How many threads the CPU kernels may use (numba's count when numba is loaded, else the CPUs)."""
    if "numba" in sys.modules:
        return sys.modules["numba"].get_num_threads()
    return os.cpu_count()


_OPENBLAS_CORENAME_SYMBOLS = (  # NumPy's wheels rename OpenBLAS's symbols (scipy-openblas, 64-bit ints)
    "scipy_openblas_get_corename64_",
    "scipy_openblas_get_corename",
    "openblas_get_corename64_",
    "openblas_get_corename",
)


def _loaded_openblas_libraries():
    """Each OpenBLAS shared library this process has mapped (found in /proc/self/maps), opened with
    ctypes; nothing outside Linux."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            mapped_files = {line.split()[-1] for line in maps}
    except OSError:  # not Linux
        return
    for path in sorted(path for path in mapped_files if "openblas" in path.lower() and ".so" in path):
        try:
            yield ctypes.CDLL(path)
        except OSError:
            continue


def openblas_kernels() -> str | None:
    """The kernel family the loaded OpenBLAS runs (e.g. ``"Haswell"``), or None where it cannot be asked.

    See :mod:`tinyvae.blas_tuning` for why this matters on some CPUs.
    """
    for library in _loaded_openblas_libraries():
        for symbol in _OPENBLAS_CORENAME_SYMBOLS:
            corename = getattr(library, symbol, None)
            if corename is not None:
                corename.restype = ctypes.c_char_p
                return corename().decode()
    return None


_OPENBLAS_THREAD_SYMBOLS = (  # NumPy's wheels rename OpenBLAS's symbols (scipy-openblas, 64-bit ints)
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


def openblas_thread_control():
    """(get_num_threads, set_num_threads) of the OpenBLAS this process has loaded, or None."""
    for library in _loaded_openblas_libraries():
        for get_name, set_name in _OPENBLAS_THREAD_SYMBOLS:
            get, set_ = getattr(library, get_name, None), getattr(library, set_name, None)
            if get is not None and set_ is not None:
                get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                return get, set_
    return None


@contextlib.contextmanager
def blas_threads(count):
    """Run the block with OpenBLAS (the BLAS inside NumPy's wheels) on ``count`` threads, then restore its
    count; a no-op where the loaded BLAS is not an OpenBLAS that can be asked.

    Why: the prior's matrices are small (a batch of 128 sequences of 16 codes is 2,048 × 64 by 64 × 64), and
    OpenBLAS's threads cost more than they save on them. Measured on a 2-vCPU AMD EPYC (CPU family 26) with
    another process busy on one core, one epoch of the default prior (4,500 sequences of L = 16 codes):
    1.05-1.1 s on one thread against 11-14 s on two (K = 64 and K = 32, 2026-11-27). ``tinyvae
    train-prior``, :class:`LearnedCodes` and ``examples/vqvae_prior.py`` run the prior inside it.
    """
    library = openblas_thread_control()
    if library is None:
        yield
        return
    get, set_ = library
    previous = int(get())
    set_(int(count))
    try:
        yield
    finally:
        set_(previous)


def info():
    """Which backend runs and why, with the versions behind it and the thread count."""
    name = current()
    details = {"backend": name, "reason": _selected["reason"], "numpy": numpy.__version__}
    for other, (ok, detail) in available().items():
        if other != "numpy":
            details[other] = detail if ok else f"unavailable: {detail}"
    details["blas_kernels"] = openblas_kernels() or "unknown (BLAS is not OpenBLAS, or it cannot be asked)"
    details["blas_tuning"] = blas_tuning.decision["reason"]
    if name != "cupy":
        details["threads"] = threads()
        if name == "numba":
            numba = load_numba()
            try:
                details["numba_threading_layer"] = numba.threading_layer()
            except ValueError:  # no parallel region has run yet, so no layer is chosen
                details["numba_threading_layer"] = "chosen at the first parallel kernel"
    return details
