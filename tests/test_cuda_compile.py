"""Every CUDA source of kernels/ compiles with NVRTC, on a machine with neither a GPU nor CuPy.

CuPy compiles a kernel at its first call, on a GPU; a kernel whose CUDA does not compile there (an
identifier NVRTC does not know, a type error) would fail only on a GPU, which CI does not have. So this
file compiles each one with NVIDIA's runtime compiler directly (kernels/_nvrtc.py, through ctypes; the
library is the ``nvidia-cuda-nvrtc-cu12`` wheel of the test extra), to PTX for compute_80, with the flag
CuPy adds to every compile (``-ftz=true``):

* every RawModule (each ``RawModuleSource`` constant of kernels/): its code with its own options and
  name expressions, exactly as the module hands them to CuPy; every kernel it looks up must be in the PTX.
* every ElementwiseKernel (each ``ElementwiseKernelSource`` constant): CuPy generates a kernel around the
  operation; this file wraps the operation in a minimal kernel of the same shape: a typedef for each type
  placeholder (``T`` as float, then as double), the preamble, then a grid-stride loop over i that binds
  each element parameter (``const T x = x_[i];`` for an input, ``T& y = y_[i];`` for an output), with
  scalar parameters passed by value and raw ones as pointers.

What this covers: the operation, the preamble and every raw source compile under NVRTC with CUDA's
built-in device functions and no host headers, in float32 and float64. What it does not: the elementwise
wrapper is not CuPy's generated code (no CArray, CIndexer or CuPy headers), and nothing here runs a kernel
or checks its numbers; tests/test_kernel_*.py do that on a GPU, against the NumPy references.

A check that cannot fail proves nothing: two tests compile a known mistake (``INFINITY``, a math.h macro
NVRTC does not have, as the logsumexp kernel once used) and expect NVRTC's refusal, with its log.

Without the NVRTC library these tests skip, with the reason; under CI (``$CI`` set) they fail instead,
since CI installs the test extra (``pip install -e ".[test]"``) and a skip there would hide a broken kernel.
"""

import importlib
import os
import re
from pathlib import Path

import pytest
from tinyvae.kernels import _nvrtc
from tinyvae.kernels._cuda_source import ElementwiseKernelSource, RawModuleSource
from tinyvae.kernels.unrouted import logsumexp

KERNELS = Path(__file__).resolve().parent.parent / "kernels"


def require_nvrtc():
    """Skip the calling test when no NVRTC library loads, or fail it under CI (where the test extra
    installs NVRTC, so its absence is a broken setup, not a machine without a GPU)."""
    try:
        _nvrtc.load_library()
    except _nvrtc.NvrtcNotFound as error:
        if os.environ.get("CI"):
            pytest.fail(
                'CI compiles every CUDA kernel source and needs NVRTC: pip install -e ".[test]" installs it '
                f"(nvidia-cuda-nvrtc-cu12). {error}"
            )
        pytest.skip(f"NVRTC is not installed, so the CUDA sources are not compiled here: {error}")


def kernel_modules():
    """Every module under kernels/ (unrouted/ included), imported as tinyvae.kernels.*."""
    for path in sorted(KERNELS.rglob("*.py")):
        parts = path.relative_to(KERNELS).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield importlib.import_module(".".join(("tinyvae.kernels", *parts)))


def declared_sources(kind):
    """{"module.CONSTANT": source} for every module-level constant of class ``kind`` under kernels/."""
    found = {}
    for module in kernel_modules():
        for name, value in vars(module).items():
            if isinstance(value, kind) and all(value is not v for v in found.values()):
                found[f"{module.__name__.removeprefix('tinyvae.kernels.')}.{name}"] = value
    return found


RAW_MODULES = declared_sources(RawModuleSource)
ELEMENTWISE = declared_sources(ElementwiseKernelSource)


def test_every_cupy_kernel_is_declared_as_data():
    """No kernel file builds a CuPy kernel from strings of its own (only kernels/_cuda_source.py calls
    CuPy's constructors), so every kernel is among the sources compiled below; and the ones known today are
    all found."""
    constructors = re.compile(r"cupy\.(ElementwiseKernel|RawModule|RawKernel|ReductionKernel)\(")
    for path in sorted(KERNELS.rglob("*.py")):
        if path.name != "_cuda_source.py":
            assert not constructors.search(path.read_text()), f"{path} builds a CuPy kernel itself"
    assert {"codebook.CUPY_MODULE", "im2col.CUPY_MODULE", "unrouted.logsumexp.CUPY_MODULE"} <= set(
        RAW_MODULES
    )
    assert {
        "adam.CUPY_KERNEL",
        "relu.CUPY_FORWARD",
        "relu.CUPY_BACKWARD",
        "bernoulli_parts.CUPY_LOG_PROB_TERMS",
        "bernoulli_parts.CUPY_LOGIT_GRADIENT",
        "unrouted.bernoulli.CUPY_TERMS",
        "unrouted.gaussian.CUPY_FORWARD",
        "unrouted.gaussian.CUPY_BACKWARD",
    } <= set(ELEMENTWISE)


# ---------------------------------------------------------------------------------------------------------
# RawModules: compiled exactly as the module passes them to CuPy.


@pytest.mark.parametrize("name", sorted(RAW_MODULES))
def test_every_raw_module_compiles(name):
    """The source compiles with its own options and name expressions; every ``extern "C"`` kernel the
    module looks up, and every templated one it instantiates (float and double), is in the PTX."""
    require_nvrtc()
    source = RAW_MODULES[name]
    compiled = _nvrtc.compile_to_ptx(
        source.code, options=source.options, name_expressions=source.name_expressions, program_name=name
    )
    kernels = set(re.findall(r"\.entry\s+(\w+)\(", compiled.ptx))
    assert source.entry_points or source.name_expressions, f"{name} declares no kernel to look up"
    assert set(source.entry_points) <= kernels, f"{name}: missing {set(source.entry_points) - kernels}"
    assert set(compiled.lowered_names) == set(source.name_expressions)
    assert set(compiled.lowered_names.values()) <= kernels


def test_the_old_logsumexp_source_is_caught():
    """The logsumexp kernel once wrote ``-INFINITY``, a math.h macro that NVRTC (no host headers) does not
    define, so it compiled nowhere. That source is refused here, with NVRTC's log in the error."""
    require_nvrtc()
    source = logsumexp.CUPY_MODULE
    assert "#define TV_INF __int_as_float(0x7f800000)" in source.code
    old = source.code.replace("#define TV_INF __int_as_float(0x7f800000)", "#define TV_INF INFINITY")
    with pytest.raises(_nvrtc.CompileError, match=r'identifier "INFINITY" is undefined') as caught:
        _nvrtc.compile_to_ptx(old, options=source.options, name_expressions=source.name_expressions)
    assert 'identifier "INFINITY" is undefined' in caught.value.log
    assert "-ftz=true" in str(caught.value) and "-std=c++14" in str(caught.value)


# ---------------------------------------------------------------------------------------------------------
# ElementwiseKernels: the operation wrapped in a minimal kernel, as CuPy wraps it.

# CuPy's dtype names in a parameter list, as C types; any other type name is a placeholder (``T``).
C_TYPES = {
    "bool": "bool",
    "int8": "signed char",
    "uint8": "unsigned char",
    "int16": "short",
    "uint16": "unsigned short",
    "int32": "int",
    "uint32": "unsigned int",
    "int64": "long long",
    "uint64": "unsigned long long",
    "float32": "float",
    "float64": "double",
}


def parse_params(text):
    """CuPy's ``"T x, raw T w, float64 s"`` as [(is_raw, type name, parameter name)]."""
    params = []
    for item in text.split(","):
        words = item.split()
        is_raw = words[0] == "raw"
        type_name, name = words[1:] if is_raw else words
        params.append((is_raw, type_name, name))
    return params


def elementwise_cuda(source: ElementwiseKernelSource, placeholder_type: str) -> str:
    """A minimal CUDA kernel around ``source.operation``, each type placeholder typedef'd to
    ``placeholder_type`` ("float" or "double"); see the module docstring."""
    inputs, outputs = parse_params(source.in_params), parse_params(source.out_params)
    input_names = [name for _, _, name in inputs]
    assert set(source.scalar_params) <= set(input_names), f"{source.name}: scalar_params not in in_params"
    placeholders = sorted({t for _, t, _ in inputs + outputs if t not in C_TYPES})
    arguments, bindings = [], []
    for is_output, (is_raw, type_name, name) in [(False, p) for p in inputs] + [(True, p) for p in outputs]:
        c_type = C_TYPES.get(type_name, type_name)
        if is_raw:
            arguments.append(f"{c_type}* {name}")
        elif name in source.scalar_params:
            arguments.append(f"{c_type} {name}")
        elif is_output:
            arguments.append(f"{c_type}* {name}_")
            bindings.append(f"{c_type}& {name} = {name}_[i];")
        else:
            arguments.append(f"const {c_type}* {name}_")
            bindings.append(f"const {c_type} {name} = {name}_[i];")
    return "\n".join(
        [f"typedef {placeholder_type} {t};" for t in placeholders]
        + [
            source.preamble,
            f'extern "C" __global__ void {source.name}({", ".join(arguments)}, long long _size) {{',
            "    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < _size;",
            "         i += (long long)gridDim.x * blockDim.x) {",
            *(f"        {b}" for b in bindings),
            source.operation,
            "    }",
            "}",
        ]
    )


@pytest.mark.parametrize("placeholder_type", ["float", "double"])
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_every_elementwise_kernel_compiles(name, placeholder_type):
    """The operation and preamble compile in a kernel of CuPy's shape, T as float and as double."""
    require_nvrtc()
    source = ELEMENTWISE[name]
    cuda = elementwise_cuda(source, placeholder_type)
    compiled = _nvrtc.compile_to_ptx(cuda, program_name=f"{name}_{placeholder_type}.cu")
    assert re.search(rf"\.entry\s+{source.name}\(", compiled.ptx), cuda


def test_the_elementwise_wrapper_catches_a_wrong_operation():
    """The wrapper is not a rubber stamp: an operation using ``INFINITY`` is refused with NVRTC's log, and
    one assigning to an input element (const in CuPy's kernels too) is refused as well."""
    require_nvrtc()
    with_infinity = ElementwiseKernelSource(
        name="uses_infinity", in_params="T x", out_params="T y", operation="y = x < (T)0 ? -INFINITY : x;"
    )
    with pytest.raises(_nvrtc.CompileError, match=r'identifier "INFINITY" is undefined'):
        _nvrtc.compile_to_ptx(elementwise_cuda(with_infinity, "float"))
    writes_input = ElementwiseKernelSource(
        name="writes_input", in_params="T x", out_params="T y", operation="x = (T)0; y = x;"
    )
    with pytest.raises(_nvrtc.CompileError, match="expression must be a modifiable lvalue"):
        _nvrtc.compile_to_ptx(elementwise_cuda(writes_input, "double"))


def test_the_wrapper_binds_each_kind_of_parameter():
    """What the wrapper generates, read as text: typedef, scalar by value, raw as pointer, element input
    by value and output by reference, named dtypes as their C type."""
    source = ElementwiseKernelSource(
        name="k",
        in_params="T x, raw T w, float64 s, int32 n_",
        out_params="T y",
        operation="y = x;",
        preamble="// preamble",
        scalar_params=("s",),
    )
    cuda = elementwise_cuda(source, "float")
    assert cuda.startswith("typedef float T;\n// preamble\n")
    assert "void k(const T* x_, T* w, double s, const int* n__, T* y_, long long _size)" in cuda
    assert "const T x = x_[i];" in cuda and "T& y = y_[i];" in cuda


# ---------------------------------------------------------------------------------------------------------
# Where NVRTC is missing.


def test_a_missing_library_says_how_to_install_it(monkeypatch):
    """No NVRTC found: the error names the paths it tried and the pip command."""
    monkeypatch.setattr(_nvrtc, "library_candidates", lambda: ["/nowhere/libnvrtc.so.12"])
    _nvrtc.load_library.cache_clear()
    try:
        with pytest.raises(_nvrtc.NvrtcNotFound, match=r"/nowhere/libnvrtc\.so\.12") as caught:
            _nvrtc.load_library()
        assert 'pip install -e ".[test]"' in str(caught.value)
        assert "nvidia-cuda-nvrtc-cu12" in str(caught.value)
    finally:
        _nvrtc.load_library.cache_clear()  # the real library loads again for the tests after this one


@pytest.mark.parametrize("ci", ["true", None])
def test_missing_nvrtc_fails_under_ci_and_skips_elsewhere(monkeypatch, ci):
    """Under CI a missing NVRTC is a failure that says to install the test extra; elsewhere, a skip."""

    def not_found():
        raise _nvrtc.NvrtcNotFound("no NVRTC library found (tried: nothing)")

    monkeypatch.setattr(_nvrtc, "load_library", not_found)
    if ci:
        monkeypatch.setenv("CI", ci)
        with pytest.raises(pytest.fail.Exception, match=r'pip install -e "\.\[test\]"'):
            require_nvrtc()
    else:
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match="NVRTC is not installed"):
            require_nvrtc()
