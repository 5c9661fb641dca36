"""The Adam update, in place, one pass over each parameter (Kingma & Ba 2015, Algorithm 1, rearranged):

    m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²,   p ← p − lr_t · m / (sqrt(v) + ε_t)

with the bias corrections folded into ``lr_t`` and ``eps_t`` by the caller (see ``tinyvae.optim.Adam``).

Three versions side by side, each updating ``param``, ``m`` and ``v`` in place:

1. :func:`adam_update_numpy`: the reference. NumPy ufuncs with one scratch array; about ten passes over
   memory, which is what makes NumPy's Adam half of a small-batch training step.
2. :func:`adam_update_numba`: one fused loop that reads p, g, m, v once and writes p, m, v once, compiled
   with NumPy's error model. Python's (numba's default) checks every division for a zero divisor and
   raises ZeroDivisionError, a branch in the loop that keeps LLVM from emitting packed (AVX) instructions;
   NumPy's gives IEEE results instead (never reached here: sqrt(v) + ε_t > 0), and the loop vectorises.
   Measured on the 2-core AMD EPYC (Zen 5) of benchmarks/RESULTS.md at 652,824 float32 elements, one
   thread, idle: 1,937 µs with Python's error model, 267 µs with NumPy's. (Earlier versions got the same
   vectorisation from ``prange`` with ``parallel=True`` run on one thread: 268-275 µs, but a 0.51-0.54 s
   compile instead of 0.33-0.36 s, and numba's thread pool set up for a loop that never used a second
   thread.)
3. :func:`adam_update_cupy`: the same fused loop as a CuPy ElementwiseKernel, with 1 − β1 and 1 − β2
   computed on the host in float64 as the numba version does.
"""

from __future__ import annotations

import functools

import numpy as np
from tinyvae.kernels._cuda_source import ElementwiseKernelSource
from tinyvae.kernels._jit import compile_kernels
from tinyvae.kernels._routing import pick_version

from tinyvae.backend import array_module

COMPILE_SECONDS: dict[str, float] = {}  # first-use compile/load time per version, read by the benchmark


def _check(param, grad, m, v):
    for name, a in (("grad", grad), ("m", m), ("v", v)):
        if a.shape != param.shape:
            raise ValueError(
                f"adam_update: {name} has shape {a.shape} but the parameter has shape {param.shape}"
            )
    for name, a in (("param", param), ("m", m), ("v", v)):
        if not a.flags.c_contiguous:
            raise ValueError(f"adam_update: {name} must be C-contiguous (it is updated in place)")


# ---------------------------------------------------------------------------------------------------------
# 1. NumPy reference.
# ---------------------------------------------------------------------------------------------------------


def adam_update_numpy(param, grad, m, v, lr_t, eps_t, beta1, beta2, work=None):
    """In-place Adam step with NumPy ufuncs; ``work`` (param's shape) avoids one allocation per call."""
    xp = array_module(param)
    work = xp.empty_like(param) if work is None else work
    m *= beta1
    xp.multiply(grad, 1 - beta1, out=work)
    m += work
    v *= beta2
    xp.multiply(grad, grad, out=work)
    work *= 1 - beta2
    v += work
    xp.sqrt(v, out=work)
    work += eps_t
    xp.divide(m, work, out=work)
    work *= lr_t
    param -= work


# ---------------------------------------------------------------------------------------------------------
# 2. numba: one fused pass.
# ---------------------------------------------------------------------------------------------------------

_NUMBA_SIGNATURES = [
    f"void({t}[::1], {t}[::1], {t}[::1], {t}[::1], float64, float64, float64, float64)"
    for t in ("float32", "float64")
]


def _fused_adam(param, grad, m, v, lr_t, eps_t, beta1, beta2):
    """p, m, v updated elementwise; scalars cast to the array dtype so float32 stays float32 throughout."""
    dtype = param.dtype.type
    b1, b2 = dtype(beta1), dtype(beta2)
    one_minus_b1, one_minus_b2 = dtype(1 - beta1), dtype(1 - beta2)
    lr, eps = dtype(lr_t), dtype(eps_t)
    for i in range(param.size):
        g = grad[i]
        m_i = b1 * m[i] + one_minus_b1 * g
        v_i = b2 * v[i] + one_minus_b2 * g * g
        m[i] = m_i
        v[i] = v_i
        param[i] -= lr * m_i / (np.sqrt(v_i) + eps)


@functools.cache
def _numba_kernel():
    """Compile (or load from numba's on-disk cache) the fused update; on first use, never at import."""
    options = {"boundscheck": False, "error_model": "numpy"}  # NumPy's error model: see the docstring
    (kernel,) = compile_kernels(
        "adam_update", [(_fused_adam, _NUMBA_SIGNATURES)], seconds=COMPILE_SECONDS, **options
    )
    return kernel


def adam_update_numba(param, grad, m, v, lr_t, eps_t, beta1, beta2, work=None):
    """In-place Adam step in one numba pass (``work`` is accepted for a common signature and unused)."""
    _check(param, grad, m, v)
    grad = np.ascontiguousarray(grad, dtype=param.dtype)
    kernel = _numba_kernel()  # a serial loop on one thread: the pass is memory-bound
    scalars = float(lr_t), float(eps_t), float(beta1), float(beta2)
    kernel(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), *scalars)


# ---------------------------------------------------------------------------------------------------------
# 3. CuPy: the same fused loop as an ElementwiseKernel.
# ---------------------------------------------------------------------------------------------------------

# 1 − β1 and 1 − β2 come in as scalars computed on the host in float64 and rounded once to the arrays'
# dtype, as the numba version computes them: the kernel computing (1 − b2) in float32 from a b2 already
# rounded to float32 gives 1 − 0.999 with a relative error of 1.3e-5, because float32(0.999) is off by
# 1.3e-8, which is 1.3e-5 of the difference 0.001.
CUPY_KERNEL = ElementwiseKernelSource(
    name="tinyvae_adam_update",
    in_params="T g, T lr, T eps, T b1, T b2, T one_minus_b1, T one_minus_b2",
    out_params="T param, T m, T v",
    operation="""
    m = b1 * m + one_minus_b1 * g;
    v = b2 * v + one_minus_b2 * g * g;
    param -= lr * m / (sqrt(v) + eps);
    """,
    scalar_params=("lr", "eps", "b1", "b2", "one_minus_b1", "one_minus_b2"),
)


@functools.cache
def _cupy_kernel():
    return CUPY_KERNEL.build()


def cupy_scalars(dtype, lr_t, eps_t, beta1, beta2):
    """The scalars the CuPy kernel takes after the gradient, in ``dtype``: lr_t, eps_t, β1, β2, 1 − β1 and
    1 − β2, each computed in float64 and rounded once (see CUPY_KERNEL)."""
    dtype = np.dtype(dtype).type
    lr_t, eps_t, beta1, beta2 = float(lr_t), float(eps_t), float(beta1), float(beta2)
    return tuple(dtype(s) for s in (lr_t, eps_t, beta1, beta2, 1 - beta1, 1 - beta2))


def adam_update_cupy(param, grad, m, v, lr_t, eps_t, beta1, beta2, work=None):
    """In-place Adam step as one CuPy elementwise kernel. Compiled with CuPy's ``-ftz=true``: float32
    values below 1.18e-38 (the smallest normal) become 0 on the GPU, where NumPy keeps the subnormal."""
    _check(param, grad, m, v)
    _cupy_kernel()(grad, *cupy_scalars(param.dtype, lr_t, eps_t, beta1, beta2), param, m, v)


# ---------------------------------------------------------------------------------------------------------
# The entry point the optimiser calls.
# ---------------------------------------------------------------------------------------------------------

IMPLEMENTATIONS = {"numpy": adam_update_numpy, "numba": adam_update_numba, "cupy": adam_update_cupy}


def adam_update_all(updates, lr_t, eps_t, beta1, beta2, *, backend=None):
    """One Adam step for every ``(param, grad, m, v, work)`` in ``updates``, as :func:`adam_update` does
    one by one, with the version picked once for the whole list (the parameters of one model live in one
    place)."""
    updates = list(updates)
    if not updates:
        return
    update = pick_version(IMPLEMENTATIONS, "adam_update", (updates[0][0],), backend)
    for param, grad, m, v, work in updates:
        update(param, grad, m, v, lr_t, eps_t, beta1, beta2, work)


def adam_update(param, grad, m, v, lr_t, eps_t, beta1, beta2, work=None, *, backend=None):
    """Adam step in place on ``param``, ``m``, ``v``; the version follows ``tinyvae.backend`` (CuPy arrays
    go to CuPy) unless ``backend`` names one."""
    update = pick_version(IMPLEMENTATIONS, "adam_update", (param,), backend)
    update(param, grad, m, v, lr_t, eps_t, beta1, beta2, work)
