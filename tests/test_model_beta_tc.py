"""β-TC-VAE (BetaVAEConfig.total_correlation): the KL's three parts by minibatch-weighted sampling."""

import math

import numpy
import pytest

from tinyvae import models
from tinyvae.tensor import Tensor

X = numpy.random.default_rng(0).random((24, 16))


def build(name="beta-vae", dtype="float32", **options):
    if name == "beta-vae":
        options.setdefault("total_correlation", True)
    return models.build(
        name, x_dim=16, z_dim=3, hidden=(8,), activation="tanh", seed=3, dtype=dtype, **options
    )


def test_the_three_parts_sum_to_the_sampled_kl():
    """MI + TC + dimension-wise KL = log q(z|x) − log p(z) at the same z, computed here from scratch."""
    model = build(beta=4.0)
    result = model.loss(X, numpy.random.default_rng(5))
    numpy.testing.assert_allclose(result.mi + result.tc + result.dim_kl, result.kl, rtol=1e-5, atol=1e-4)
    mu, logvar = (t.numpy().astype(numpy.float64) for t in model.encode(X))
    eps = numpy.random.default_rng(5).standard_normal(mu.shape).astype(numpy.float32)
    z = mu + numpy.exp(0.5 * logvar) * eps
    log_q = (-0.5 * (eps**2 + logvar + math.log(2 * math.pi))).sum(axis=1)
    log_p = (-0.5 * (z**2 + math.log(2 * math.pi))).sum(axis=1)
    numpy.testing.assert_allclose(result.kl, log_q - log_p, rtol=1e-4, atol=1e-3)


def test_the_minibatch_weighted_estimates_by_hand():
    """log q(z_i) ≈ log Σ_j q(z_i|n_j) − log(N M), and the same per dimension (Chen et al. 2018, Sec. 4.1)."""
    model = build(dtype="float64", dataset_size=1000)
    mu, logvar = (t.numpy() for t in model.encode(X))
    z = mu + numpy.exp(0.5 * logvar) * numpy.random.default_rng(2).standard_normal(mu.shape)
    pairs = -0.5 * (
        (z[:, None] - mu[None]) ** 2 / numpy.exp(logvar[None]) + logvar[None] + math.log(2 * math.pi)
    )
    log_norm = math.log(1000 * len(X))
    log_qz = numpy.log(numpy.exp(pairs.sum(axis=2)).sum(axis=1)) - log_norm
    log_qz_dims = (numpy.log(numpy.exp(pairs).sum(axis=1)) - log_norm).sum(axis=1)
    log_q_own = pairs[numpy.arange(len(X)), numpy.arange(len(X))].sum(axis=1)
    log_p = (-0.5 * (z**2 + math.log(2 * math.pi))).sum(axis=1)
    mi, tc, dim_kl = (p.numpy() for p in model.kl_parts(Tensor(z), Tensor(mu), Tensor(logvar)))
    numpy.testing.assert_allclose(mi, log_q_own - log_qz, rtol=1e-10, atol=1e-10)
    numpy.testing.assert_allclose(tc, log_qz - log_qz_dims, rtol=1e-10, atol=1e-10)
    numpy.testing.assert_allclose(dim_kl, log_qz_dims - log_p, rtol=1e-10, atol=1e-10)


def test_with_weight_one_it_is_the_vae_loss_with_a_sampled_kl_and_the_elbo_in_expectation():
    """β = 1: on the same noise, exactly the VAE's loss with the sampled KL log q(z|x) − log p(z); over 400
    noise draws its mean matches the VAE's loss with the analytic KL (the negative ELBO estimate) within
    four standard errors of the paired difference (the reconstruction terms are identical draw by draw)."""
    tc = build(beta=1.0)
    sampled = build("vae", analytic_kl=False)
    analytic = build("vae")
    differences = []
    for seed in range(400):
        loss_tc = tc.loss(X, numpy.random.default_rng(seed)).loss.item()
        assert loss_tc == pytest.approx(sampled.loss(X, numpy.random.default_rng(seed)).loss.item(), rel=1e-5)
        differences.append(loss_tc - analytic.loss(X, numpy.random.default_rng(seed)).loss.item())
    differences = numpy.array(differences)
    assert abs(differences.mean()) < 4 * differences.std() / math.sqrt(len(differences))
    assert differences.std() > 1e-3  # the test can fail: the sampled KL really is noisy


def test_the_gradient_matches_finite_differences_in_float64():
    """⟨∇L, u⟩ against (L(θ + εu) − L(θ − εu)) / 2ε for a random direction u over every parameter, with
    the noise held fixed (a fresh Generator of the same seed per call), β = 4 so the weighting matters."""
    model = build(dtype="float64", beta=4.0)
    x = X[:10]
    params = model.parameters()
    model.zero_grad()
    model.loss(x, numpy.random.default_rng(7)).loss.backward()
    grads = [p.grad.copy() for p in params]
    rng = numpy.random.default_rng(11)
    directions = [rng.standard_normal(p.data.shape) for p in params]
    analytic = sum(float((g * u).sum()) for g, u in zip(grads, directions, strict=True))

    def loss_at(step):
        for p, u in zip(params, directions, strict=True):
            p.data += step * u
        value = model.loss(x, numpy.random.default_rng(7)).loss.item()
        for p, u in zip(params, directions, strict=True):
            p.data -= step * u
        return value

    eps = 1e-6
    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert numeric == pytest.approx(analytic, rel=1e-5)
    wrong = build(dtype="float64", beta=1.0)  # the check can fail: β changes the gradient
    wrong.zero_grad()
    wrong.loss(x, numpy.random.default_rng(7)).loss.backward()
    assert sum(float((p.grad * u).sum()) for p, u in zip(wrong.parameters(), directions, strict=True)) != (
        pytest.approx(analytic, rel=1e-3)
    )


def test_options_that_do_not_combine_are_refused():
    with pytest.raises(ValueError, match="free_bits"):
        build(free_bits=0.5)
    with pytest.raises(ValueError, match="mc_samples"):
        build(mc_samples=2)
    with pytest.raises(ValueError, match="dataset_size"):
        build(dataset_size=0)
