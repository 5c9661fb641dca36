"""Compiling the CuPy versions' CUDA C++ with NVIDIA's runtime compiler (NVRTC), without CuPy or a GPU.

CuPy compiles each kernel of this folder with NVRTC the first time it runs, so a source that does not
compile fails only on a GPU, at its first call. CuPy cannot compile without a device (it asks the device
for its architecture first), but NVRTC itself needs none: it turns CUDA C++ into PTX on any x86-64
machine. This module calls NVRTC's C API through ctypes, so the tests (tests/test_cuda_compile.py) and
the benchmarks can compile every kernel source on a machine without a GPU. NVIDIA ships the library as a
wheel, ``nvidia-cuda-nvrtc-cu12``, which tinyvae's ``test`` extra installs (``pip install -e ".[test]"``).

What a successful compile shows: the source is valid CUDA C++ under NVRTC, with CUDA's built-in device
functions (``exp``, ``__shfl_xor_sync``, ``__int_as_float``, ...) and no host headers. NVRTC has no
``math.h``: ``INFINITY`` and ``NAN`` are undefined there, which is exactly the mistake a test on a CPU
can catch. Templates are checked in full only where they are instantiated, so the name expressions a
module asks CuPy for (``lse_rows<float>``) are passed here too. What it does not show: that the kernel
gives the right numbers, or the machine code (SASS) for a particular GPU; that takes a GPU.

CuPy adds ``-ftz=true`` to every compile (``_compile_with_cache_cuda`` in cupy/cuda/compiler.py): float32
values below the smallest normal, 1.18e-38, are flushed to zero on the GPU (σ(−100) is 0 there, not
3.8e-44; float64 is unaffected). :data:`CUPY_OPTIONS` repeats that flag, so what compiles here is what
CuPy compiles.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
from dataclasses import dataclass

# What CuPy adds to every kernel's own options (see the module docstring).
CUPY_OPTIONS = ("-ftz=true",)
# The virtual architecture compiled for when the options name none: compute_80 (A100). The kernels use
# nothing newer than warp shuffles, so every architecture that CUDA 12 supports would do; one keeps the
# check fast.
DEFAULT_ARCHITECTURE = "compute_80"
# NVRTC_SUCCESS in nvrtc.h; every other nvrtcResult is an error, named by nvrtcGetErrorString.
_SUCCESS = 0
_INSTALL_HINT = (
    'pip install nvidia-cuda-nvrtc-cu12 (tinyvae\'s test extra has it: pip install -e ".[test]"), or set '
    "TINYVAE_NVRTC to the path of a libnvrtc.so"
)


class NvrtcNotFound(RuntimeError):
    """No NVRTC library could be loaded on this machine."""


class CompileError(RuntimeError):
    """NVRTC refused a source; the message holds NVRTC's own log (file, line and what is wrong)."""

    def __init__(self, message: str, log: str):
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Compiled:
    """What NVRTC made of one source."""

    ptx: str  # the PTX assembly: one ``.entry`` per kernel
    log: str  # NVRTC's warnings (empty when there are none)
    lowered_names: dict  # name expression -> the mangled name of its kernel in the PTX


def library_candidates() -> list[str]:
    """Where :func:`load_library` looks, in order: $TINYVAE_NVRTC, the NVIDIA wheels' ``lib`` folders in
    site-packages (``nvidia/cuda_nvrtc/lib/libnvrtc.so.12`` for ``nvidia-cuda-nvrtc-cu12``), the system
    linker's search path, then $CUDA_PATH (or /usr/local/cuda)."""
    candidates = []
    if os.environ.get("TINYVAE_NVRTC"):
        candidates.append(os.environ["TINYVAE_NVRTC"])
    spec = importlib.util.find_spec("nvidia")  # a namespace package shared by NVIDIA's wheels
    for root in spec.submodule_search_locations if spec else []:
        candidates += sorted(glob.glob(os.path.join(root, "cuda_nvrtc", "lib", "libnvrtc.so*")))
        candidates += sorted(glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so*")))
    found = ctypes.util.find_library("nvrtc")
    if found:
        candidates.append(found)
    cuda = os.environ.get("CUDA_PATH", "/usr/local/cuda")
    candidates += sorted(glob.glob(os.path.join(cuda, "lib64", "libnvrtc.so*")))
    # libnvrtc.alt.so is NVRTC built against another C++ runtime; libnvrtc-builtins is its helper library.
    return [c for c in dict.fromkeys(candidates) if ".alt." not in c and "builtins" not in c]


@functools.cache
def load_library() -> ctypes.CDLL:
    """NVRTC's shared library with the argument types of the calls used here; :class:`NvrtcNotFound`
    (saying where it looked and how to install it) when none loads."""
    tried = []
    for path in library_candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as error:
            tried.append(f"{path} ({error})")
            continue
        _declare(lib)
        return lib
    raise NvrtcNotFound(
        "tinyvae.kernels._nvrtc: no NVRTC library found (tried: "
        + ("; ".join(tried) or "nothing: no candidate exists")
        + f"). To compile the CUDA kernels without a GPU, {_INSTALL_HINT}."
    )


def _declare(lib):
    """Argument and result types for the NVRTC calls below (nvrtc.h); an nvrtcProgram is an opaque pointer."""
    program, text, size = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    lib.nvrtcGetErrorString.restype = text
    lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
    signatures = {
        "nvrtcVersion": [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)],
        "nvrtcCreateProgram": [
            ctypes.POINTER(program),
            text,  # the source
            text,  # its file name, shown in the log
            ctypes.c_int,  # number of in-memory headers (none here)
            ctypes.POINTER(text),
            ctypes.POINTER(text),
        ],
        "nvrtcAddNameExpression": [program, text],
        "nvrtcCompileProgram": [program, ctypes.c_int, ctypes.POINTER(text)],
        "nvrtcGetProgramLogSize": [program, ctypes.POINTER(size)],
        "nvrtcGetProgramLog": [program, ctypes.c_char_p],
        "nvrtcGetPTXSize": [program, ctypes.POINTER(size)],
        "nvrtcGetPTX": [program, ctypes.c_char_p],
        "nvrtcGetLoweredName": [program, text, ctypes.POINTER(text)],
        "nvrtcDestroyProgram": [ctypes.POINTER(program)],
    }
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int


def _check(lib, result, call):
    if result != _SUCCESS:
        raise RuntimeError(f"NVRTC {call} failed: {lib.nvrtcGetErrorString(result).decode()}")


def version() -> tuple[int, int]:
    """NVRTC's (major, minor) version, e.g. (12, 9)."""
    lib = load_library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def compile_to_ptx(
    source: str, *, options=(), name_expressions=(), program_name: str = "kernel.cu"
) -> Compiled:
    """Compile CUDA C++ ``source`` to PTX with ``options`` (the kernel's own, as passed to CuPy), plus
    :data:`CUPY_OPTIONS` and ``--gpu-architecture`` :data:`DEFAULT_ARCHITECTURE` unless ``options`` names
    an architecture. ``name_expressions`` (``"lse_rows<float>"``) instantiate templated kernels, as CuPy's
    ``RawModule(name_expressions=...)`` does. Raises :class:`CompileError` with NVRTC's log when the
    source does not compile."""
    lib = load_library()
    options = tuple(options) + CUPY_OPTIONS
    if not any(o.startswith(("-arch", "--gpu-architecture")) for o in options):
        options += (f"--gpu-architecture={DEFAULT_ARCHITECTURE}",)
    program = ctypes.c_void_p()
    _check(
        lib,
        lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), program_name.encode(), 0, None, None),
        "nvrtcCreateProgram",
    )
    try:
        for expression in name_expressions:
            _check(lib, lib.nvrtcAddNameExpression(program, expression.encode()), "nvrtcAddNameExpression")
        encoded = [o.encode() for o in options]
        result = lib.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
        log = _read(lib, program, lib.nvrtcGetProgramLogSize, lib.nvrtcGetProgramLog)
        if result != _SUCCESS:
            raise CompileError(
                f"NVRTC {'.'.join(map(str, version()))} could not compile {program_name} with options "
                f"{' '.join(options)}: {lib.nvrtcGetErrorString(result).decode()}\n{log}",
                log,
            )
        ptx = _read(lib, program, lib.nvrtcGetPTXSize, lib.nvrtcGetPTX)
        lowered = {}
        for expression in name_expressions:
            name = ctypes.c_char_p()
            _check(
                lib,
                lib.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(name)),
                "nvrtcGetLoweredName",
            )
            lowered[expression] = name.value.decode()
        return Compiled(ptx=ptx, log=log, lowered_names=lowered)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def _read(lib, program, get_size, get_text) -> str:
    """One of the program's texts (log or PTX): ask its size (with the closing NUL), then fill a buffer."""
    size = ctypes.c_size_t()
    _check(lib, get_size(program, ctypes.byref(size)), get_size.__name__)
    buffer = ctypes.create_string_buffer(size.value)
    _check(lib, get_text(program, buffer), get_text.__name__)
    return buffer.value.decode(errors="replace")
