"""The fused reparameterise + Gaussian KL kernel (kernels/unrouted/gaussian.py, called by no op): every
version's forward and backward equal the NumPy reference, and the reference equals the engine's
F.reparameterize + F.gaussian_kl and their backward."""

import numpy as np
import pytest
from backends import BACKENDS, require_backend, to_backend_arrays, to_numpy
from hypothesis import given
from hypothesis import strategies as st
from tinyvae.kernels.unrouted import gaussian

import tinyvae as tv
import tinyvae.functional as F

# Tolerances: each version rounds the same few operations in a different order (fused multiply-adds in
# numba, a float64 accumulator for the KL's row sum against NumPy's float32 sum), a few ulps per element;
# the KL sums Z terms, so its absolute tolerance scales with Z and the terms' size.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def draw_arrays(rng, shape, dtype, scale):
    mu = (scale * rng.standard_normal(shape)).astype(dtype)
    logvar = (scale * rng.standard_normal(shape)).clip(-30, 30).astype(dtype)
    eps = rng.standard_normal(shape).astype(dtype)
    return mu, logvar, eps


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(
    rows=st.integers(0, 9),
    cols=st.integers(0, 40),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    transposed=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_version_matches_the_reference(backend, dtype, rows, cols, scale, transposed, seed):
    """z, kl, sigma, var and both gradients agree with the reference, empty and size-1 dims included; the
    inputs may be non-contiguous (transposed views)."""
    require_backend(backend)
    rng = np.random.default_rng(seed)
    shape = (cols, rows) if transposed else (rows, cols)
    mu, logvar, eps = draw_arrays(rng, shape, dtype, scale)
    g_z = rng.standard_normal(shape).astype(dtype)
    if transposed:
        mu, logvar, eps, g_z = mu.T, logvar.T, eps.T, g_z.T
    g_kl = rng.standard_normal(rows).astype(dtype)
    forward, backward = gaussian.IMPLEMENTATIONS[backend]
    expected = gaussian.gaussian_forward_numpy(mu, logvar, eps)
    got = [to_numpy(a) for a in forward(*to_backend_arrays(backend, mu, logvar, eps))]
    sigma, var = expected[2], expected[3]
    # Per element, the size of the terms being added: rounding error is relative to that, not to the result
    # (z = mu + sigma eps and the KL's sum can cancel).
    sizes = {
        "z": np.abs(mu) + np.abs(sigma * eps),
        "kl": (mu * mu + var + np.abs(logvar) + 1).sum(axis=1, dtype=np.float64),
        "sigma": sigma,
        "var": var,
    }
    for (name, size), e, g in zip(sizes.items(), expected, got, strict=True):
        assert_close(name, g, e, size, dtype)
    expected_grads = gaussian.gaussian_backward_numpy(g_z, g_kl, mu, eps, sigma, var)
    got_grads = backward(*to_backend_arrays(backend, g_z, g_kl, mu, eps, sigma, var))
    sizes = {
        "grad_mu": np.abs(g_z) + np.abs(g_kl[:, None] * mu),
        "grad_logvar": np.abs(g_z * eps * sigma) + np.abs(g_kl[:, None]) * (var + 1),
    }
    for (name, size), e, g in zip(sizes.items(), expected_grads, got_grads, strict=True):
        assert_close(name, to_numpy(g), e, size, dtype)


def assert_close(name, got, expected, size, dtype):
    """|got − expected| ≤ RTOL · size elementwise (size: the magnitude of the terms that were combined)."""
    assert got.dtype == dtype and got.shape == expected.shape, name
    error = np.abs(got.astype(np.float64) - expected)
    bound = RTOL[dtype] * (size.astype(np.float64) + np.finfo(dtype).tiny)
    assert np.all(error <= bound), f"{name}: worst error {error.max()} vs bound {bound.flat[error.argmax()]}"


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_kernel_equals_the_engine_ops(backend, seed):
    """In float64, z and kl equal F.reparameterize and F.gaussian_kl, and the kernel's backward equals the
    gradient the engine's walk gives for L = <g_z, z> + <g_kl, kl> (both ops sharing mu and logvar)."""
    require_backend(backend)
    rng = np.random.default_rng(seed)
    mu_data, logvar_data, eps = draw_arrays(rng, (6, 20), np.float64, 2.0)
    g_z, g_kl = rng.standard_normal((6, 20)), rng.standard_normal(6)
    mu, logvar = tv.Tensor(mu_data, requires_grad=True), tv.Tensor(logvar_data, requires_grad=True)
    z, kl = F.reparameterize(mu, logvar, eps), F.gaussian_kl(mu, logvar)
    ((z * g_z).sum() + (kl * g_kl).sum()).backward()
    forward, backward = gaussian.IMPLEMENTATIONS[backend]
    z_k, kl_k, sigma, var = forward(mu_data, logvar_data, eps)
    np.testing.assert_allclose(z_k, z.data, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(kl_k, kl.data, rtol=1e-13)
    grad_mu, grad_logvar = backward(g_z, g_kl, mu_data, eps, sigma, var)
    np.testing.assert_allclose(grad_mu, mu.grad, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(grad_logvar, logvar.grad, rtol=1e-12, atol=1e-13)


def test_shapes_are_checked():
    """A mismatched input is refused, naming it and both shapes; the entry point refuses unknown backends."""
    a = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"eps has shape \(4, 2\) but mu has shape \(4, 3\)"):
        gaussian.gaussian_forward_numba(a, a, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"g_kl has shape \(3,\) but g_z has shape \(4, 3\)"):
        gaussian.gaussian_backward_numpy(a, np.zeros(3), a, a, a, a)
    with pytest.raises(ValueError, match="backend 'fortran' is not one of"):
        gaussian.gaussian_forward(a, a, a, backend="fortran")
    z, kl, _, _ = gaussian.gaussian_forward(a, a, a)
    assert np.array_equal(z, a) and np.array_equal(kl, np.zeros(4))


def test_numba_on_two_threads_matches():
    """The numba version on numba's whole pool gives the one-thread numbers exactly."""
    require_backend("numba")
    mu, logvar, eps = draw_arrays(np.random.default_rng(2), (512, 20), np.float32, 1.0)
    one = gaussian.gaussian_forward_numba(mu, logvar, eps)
    two = gaussian.gaussian_forward_numba(mu, logvar, eps, threads=2)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


def test_import_compiles_nothing():
    """Importing the kernel imports no numba and compiles nothing; the first call does."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom tinyvae.kernels.unrouted import gaussian\n"
        "assert gaussian.numba is None and 'numba' not in sys.modules and not gaussian.COMPILE_SECONDS\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
