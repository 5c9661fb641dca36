"""The CUDA C++ of the CuPy versions, kept as plain data beside the code that builds CuPy kernels from it.

Each kernel file declares its CuPy kernels as module constants of the two classes below, and its
``_cupy_kernel*()`` function builds them on first use with ``.build()``. Keeping the strings as data, and
not only inside a ``cupy.ElementwiseKernel(...)`` call, lets tests/test_cuda_compile.py compile every
one of them with NVRTC (kernels/_nvrtc.py) on a machine with neither CuPy nor a GPU: the only place a
CUDA syntax error could otherwise show is a GPU, at the kernel's first call.

Both compile with CuPy's ``-ftz=true``: float32 results below the smallest normal (1.18e-38) are 0 on the
GPU, where NumPy and numba keep the subnormal (σ(−100) is 3.8e-44 on the CPU and 0 on the GPU). float64
is not flushed. The kernel tests compare the CuPy versions' float32 results with an absolute tolerance of
that smallest normal for this reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ElementwiseKernelSource:
    """The arguments of ``cupy.ElementwiseKernel(in_params, out_params, operation, name, preamble=...)``.

    ``in_params``/``out_params`` are CuPy's parameter lists (``"T x, raw T w, float64 s"``: a type
    placeholder such as ``T`` takes the arrays' dtype, ``raw`` passes the whole array). ``operation`` runs
    once per element with each non-raw parameter bound to that element. ``scalar_params`` names the
    in_params the module always passes as scalars, which CuPy hands to the kernel by value rather than as
    array elements (only tests/test_cuda_compile.py reads it)."""

    name: str
    in_params: str
    out_params: str
    operation: str
    preamble: str = ""
    scalar_params: tuple[str, ...] = ()

    def build(self):
        """The ``cupy.ElementwiseKernel`` (CuPy compiles it at its first call and caches the binary)."""
        import cupy

        return cupy.ElementwiseKernel(
            self.in_params, self.out_params, self.operation, self.name, preamble=self.preamble
        )


@dataclass(frozen=True)
class RawModuleSource:
    """The arguments of ``cupy.RawModule(code=..., options=..., name_expressions=...)`` and the kernels a
    module looks up in it: ``entry_points`` are ``extern "C"`` kernels (looked up by their plain name),
    ``name_expressions`` templated ones that CuPy instantiates by name (``"lse_rows<float>"``)."""

    code: str
    options: tuple[str, ...] = ()
    entry_points: tuple[str, ...] = ()
    name_expressions: tuple[str, ...] = ()

    def build(self):
        """The ``cupy.RawModule`` (CuPy compiles it at creation or at the first ``get_function``, and
        caches the binary on disk)."""
        import cupy

        return cupy.RawModule(
            code=self.code, options=self.options, name_expressions=list(self.name_expressions) or None
        )
