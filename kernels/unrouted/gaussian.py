"""Reparameterised sample and Gaussian KL to N(0, I), fused, with the backward of both in one more pass.

Not routed: no op calls this kernel (kernels/unrouted/README.md says why: the engine computes the sample and
the KL as two ops, ``Reparameterize`` and ``GaussianKL`` in tinyvae/ops/gaussian.py, and the fused backward
needs both gradients at once; the saving would be ~5 µs of a ~5.6 ms step).

Forward, for mu, logvar, eps of shape (B, Z) (Kingma & Welling 2014, eq. 10 and Appendix B):

    σ = exp(logvar / 2),   σ² = e^{logvar} = σ · σ,
    z = μ + σ ε,           kl_b = ½ Σ_j (μ_bj² + σ_bj² − logvar_bj − 1).

Backward, given g_z = dL/dz (B, Z) and g_kl = dL/dkl (B,), for each (b, j):

    dL/dμ      = g_z · dz/dμ      + g_kl · dkl/dμ      = g_z + g_kl μ,
    dL/dlogvar = g_z · dz/dlogvar + g_kl · dkl/dlogvar = g_z ε σ / 2 + g_kl (σ² − 1) / 2,

since dσ/dlogvar = σ/2 and d(e^{logvar})/dlogvar = e^{logvar}. These are the sums of
``Reparameterize.backward`` and ``GaussianKL.backward`` in tinyvae/ops/gaussian.py (standard prior) for one
shared (μ, logvar). The forward returns σ and σ² so the backward needs no exp at all.

σ² is computed as σ · σ, one exp per element instead of two: the numba measured in benchmarks/RESULTS.md
has no SVML, so exp is a scalar libm call and the dominant cost. σ · σ differs from exp(logvar) by at most
~2 ulps (relative).

Three versions side by side:

1. :func:`gaussian_forward_numpy` / :func:`gaussian_backward_numpy`: the reference, NumPy ufuncs.
2. :func:`gaussian_forward_numba` / :func:`gaussian_backward_numba`: one fused pass each; by default a
   serial build on one thread (``tinyvae.backend.load_numba``), rows in ``prange`` when more are asked.
3. :func:`gaussian_forward_cupy` / :func:`gaussian_backward_cupy`: CuPy ElementwiseKernels (the KL's row
   sum is a CuPy reduction). Compiled with flush-to-zero (``-ftz=true``, kernels/_cuda_source.py): in
   float32, a σ or σ² below 1.18e-38 is 0 on the GPU.

Each forward returns ``(z, kl, sigma, var)``; each backward ``(grad_mu, grad_logvar)``, in the inputs' dtype.
"""

from __future__ import annotations

import functools

import numpy as np
from tinyvae.kernels._cuda_source import ElementwiseKernelSource
from tinyvae.kernels._jit import compile_kernels
from tinyvae.kernels._routing import pick_version

from tinyvae import backend as _backend
from tinyvae.backend import array_module

# The loops' numba.prange: compile_kernels sets this on first use, so importing this file imports no numba.
numba = None

COMPILE_SECONDS: dict[str, float] = {}  # first-use compile/load time per version, read by the benchmark


def _check(op, **arrays):
    """All named arrays 2-D with the first one's shape; 1-D ones (g_kl) must match its rows."""
    (first_name, first), *rest = arrays.items()
    if first.ndim != 2:
        raise ValueError(f"{op}: {first_name} has shape {first.shape}; it must be 2-D (batch, latent)")
    for name, a in rest:
        expected = first.shape[:1] if name == "g_kl" else first.shape
        if a.shape != expected:
            raise ValueError(f"{op}: {name} has shape {a.shape} but {first_name} has shape {first.shape}")


# ---------------------------------------------------------------------------------------------------------
# 1. NumPy reference.
# ---------------------------------------------------------------------------------------------------------


def gaussian_forward_numpy(mu, logvar, eps):
    """``(z, kl, sigma, var)``: the reference, one ufunc per term."""
    xp = array_module(mu, logvar, eps)
    _check("gaussian_forward", mu=mu, logvar=logvar, eps=eps)
    sigma = xp.exp(0.5 * logvar)  # (B, Z)
    var = sigma * sigma  # (B, Z): e^{logvar}
    z = mu + sigma * eps  # (B, Z)
    kl = 0.5 * (mu * mu + var - logvar - 1).sum(axis=1)  # (B,)
    return z, kl.astype(mu.dtype, copy=False), sigma, var


def gaussian_backward_numpy(g_z, g_kl, mu, eps, sigma, var):
    """``(dL/dmu, dL/dlogvar)`` from dL/dz (B, Z) and dL/dkl (B,), with the forward's sigma and var."""
    _check("gaussian_backward", g_z=g_z, g_kl=g_kl, mu=mu, eps=eps, sigma=sigma, var=var)
    g = g_kl[:, None]  # (B, 1): each latent dimension of a row receives that row's KL gradient
    grad_mu = g_z + g * mu
    grad_logvar = 0.5 * (g_z * eps * sigma + g * (var - 1))
    return grad_mu, grad_logvar


# ---------------------------------------------------------------------------------------------------------
# 2. numba: one fused pass each, rows in parallel (one thread unless asked).
# ---------------------------------------------------------------------------------------------------------

_FORWARD_SIGNATURES = [
    f"void({t}[:, ::1], {t}[:, ::1], {t}[:, ::1], {t}[:, ::1], {t}[::1], {t}[:, ::1], {t}[:, ::1])"
    for t in ("float32", "float64")
]
_BACKWARD_SIGNATURES = [
    f"void({t}[:, ::1], {t}[::1], " + ", ".join([f"{t}[:, ::1]"] * 6) + ")" for t in ("float32", "float64")
]


def _fused_forward(mu, logvar, eps, z, kl, sigma, var):
    rows, cols = mu.shape
    dtype = mu.dtype.type
    half, one = dtype(0.5), dtype(1)
    for r in numba.prange(rows):
        total = 0.0  # float64 accumulator
        for c in range(cols):
            m, lv = mu[r, c], logvar[r, c]
            s = np.exp(half * lv)
            v = s * s
            sigma[r, c] = s
            var[r, c] = v
            z[r, c] = m + s * eps[r, c]
            total += m * m + v - lv - one
        kl[r] = 0.5 * total


def _fused_backward(g_z, g_kl, mu, eps, sigma, var, grad_mu, grad_logvar):
    rows, cols = mu.shape
    dtype = mu.dtype.type
    half, one = dtype(0.5), dtype(1)
    for r in numba.prange(rows):
        g = g_kl[r]
        for c in range(cols):
            gz = g_z[r, c]
            grad_mu[r, c] = gz + g * mu[r, c]
            grad_logvar[r, c] = half * (gz * eps[r, c] * sigma[r, c] + g * (var[r, c] - one))


@functools.cache
def _numba_kernels(parallel):
    """Compile (or load from numba's on-disk cache) both kernels; on first use, never at import.

    Two builds of the same loops: ``parallel=False`` for one thread, which needs no pool switch (entering
    ``backend.numba_threads`` costs ~5 µs, more than the whole (128, 20) backward), and ``parallel=True``
    for ``threads > 1``. Measured at (16..512, 20), float32: the serial build is what wins (RESULTS.md,
    "Fused elementwise kernels")."""
    return compile_kernels(
        "gaussian",
        [(_fused_forward, _FORWARD_SIGNATURES), (_fused_backward, _BACKWARD_SIGNATURES)],
        seconds=COMPILE_SECONDS,
        key="numba parallel" if parallel else "numba",
        parallel=parallel,
        boundscheck=False,
        fastmath={"contract"},
    )


def _c_order(dtype, *arrays):
    return [np.ascontiguousarray(a, dtype=dtype) for a in arrays]


def gaussian_forward_numba(mu, logvar, eps, *, threads=1):
    """``(z, kl, sigma, var)`` in one numba pass (``threads``: 1 runs the serial build, more the parallel
    build on that many of numba's threads)."""
    _check("gaussian_forward", mu=mu, logvar=logvar, eps=eps)
    mu, logvar, eps = _c_order(mu.dtype, mu, logvar, eps)
    z, sigma, var = (np.empty_like(mu) for _ in range(3))
    kl = np.empty(mu.shape[0], dtype=mu.dtype)
    if threads == 1:
        _numba_kernels(False)[0](mu, logvar, eps, z, kl, sigma, var)
    else:
        with _backend.numba_threads(threads):
            _numba_kernels(True)[0](mu, logvar, eps, z, kl, sigma, var)
    return z, kl, sigma, var


def gaussian_backward_numba(g_z, g_kl, mu, eps, sigma, var, *, threads=1):
    """``(dL/dmu, dL/dlogvar)`` in one numba pass (``threads`` as for the forward)."""
    _check("gaussian_backward", g_z=g_z, g_kl=g_kl, mu=mu, eps=eps, sigma=sigma, var=var)
    g_z, g_kl, mu, eps, sigma, var = _c_order(mu.dtype, g_z, g_kl, mu, eps, sigma, var)
    grad_mu, grad_logvar = np.empty_like(mu), np.empty_like(mu)
    if threads == 1:
        _numba_kernels(False)[1](g_z, g_kl, mu, eps, sigma, var, grad_mu, grad_logvar)
    else:
        with _backend.numba_threads(threads):
            _numba_kernels(True)[1](g_z, g_kl, mu, eps, sigma, var, grad_mu, grad_logvar)
    return grad_mu, grad_logvar


# ---------------------------------------------------------------------------------------------------------
# 3. CuPy: elementwise kernels. Compiled with CuPy's -ftz=true (kernels/_cuda_source.py): in float32 a
#    σ or σ² below 1.18e-38 (logvar below about −175) is 0 on the GPU.
# ---------------------------------------------------------------------------------------------------------

CUPY_FORWARD = ElementwiseKernelSource(
    name="tinyvae_gaussian_forward",
    in_params="T mu, T logvar, T eps",
    out_params="T z, T term, T sigma, T var",
    operation="""
    sigma = exp((T)0.5 * logvar);
    var = sigma * sigma;
    z = mu + sigma * eps;
    term = mu * mu + var - logvar - (T)1;
    """,
)
CUPY_BACKWARD = ElementwiseKernelSource(
    name="tinyvae_gaussian_backward",
    in_params="T g_z, T g_kl, T mu, T eps, T sigma, T var",
    out_params="T grad_mu, T grad_logvar",
    operation="""
    grad_mu = g_z + g_kl * mu;
    grad_logvar = (T)0.5 * (g_z * eps * sigma + g_kl * (var - (T)1));
    """,
)


@functools.cache
def _cupy_kernels():
    return CUPY_FORWARD.build(), CUPY_BACKWARD.build()


def gaussian_forward_cupy(mu, logvar, eps):
    """``(z, kl, sigma, var)``: one elementwise kernel, then the KL's row sum."""
    _check("gaussian_forward", mu=mu, logvar=logvar, eps=eps)
    forward, _ = _cupy_kernels()
    z, term, sigma, var = forward(mu, logvar, eps)
    return z, 0.5 * term.sum(axis=1), sigma, var


def gaussian_backward_cupy(g_z, g_kl, mu, eps, sigma, var):
    """``(dL/dmu, dL/dlogvar)``: one elementwise kernel, g_kl broadcast along the latent axis."""
    _check("gaussian_backward", g_z=g_z, g_kl=g_kl, mu=mu, eps=eps, sigma=sigma, var=var)
    _, backward = _cupy_kernels()
    return backward(g_z, g_kl[:, None], mu, eps, sigma, var)


# ---------------------------------------------------------------------------------------------------------
# The entry points.
# ---------------------------------------------------------------------------------------------------------

FORWARD = {"numpy": gaussian_forward_numpy, "numba": gaussian_forward_numba, "cupy": gaussian_forward_cupy}
BACKWARD = {
    "numpy": gaussian_backward_numpy,
    "numba": gaussian_backward_numba,
    "cupy": gaussian_backward_cupy,
}
IMPLEMENTATIONS = {name: (FORWARD[name], BACKWARD[name]) for name in FORWARD}


def gaussian_forward(mu, logvar, eps, *, backend=None):
    """``(z, kl, sigma, var)`` for (B, Z) inputs; the version follows the rule of kernels/_routing.py (CuPy
    arrays go to CuPy, NumPy arrays to numba under the numba backend, else NumPy) unless ``backend`` names
    one."""
    return pick_version(FORWARD, "gaussian_forward", (mu,), backend)(mu, logvar, eps)


def gaussian_backward(g_z, g_kl, mu, eps, sigma, var, *, backend=None):
    """``(dL/dmu, dL/dlogvar)``; pass zeros for a gradient that does not flow (e.g. g_kl = 0 in IWAE)."""
    return pick_version(BACKWARD, "gaussian_backward", (mu,), backend)(g_z, g_kl, mu, eps, sigma, var)
