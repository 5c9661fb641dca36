"""tinyvae.em: the exact E- and M-steps of EM for a Gaussian mixture, checked against what Bishop (2006,
Ch. 9) says they do: the E-step makes the ELBO equal log p(x), the M-step maximises the ELBO, so log p(x)
never decreases. Everything is float64."""

from __future__ import annotations

import inspect
import math

import numpy
import pytest

from tinyvae import data, em


def random_mixture(rng, k, d):
    """Weights on the simplex, spread-out means, random full covariances A Aᵀ + 0.1 I."""
    a = rng.standard_normal((k, d, d))
    covariances = a @ a.transpose(0, 2, 1) + 0.1 * numpy.eye(d)  # (K, D, D), positive definite
    return em.Mixture(rng.dirichlet(numpy.ones(k)), 2 * rng.standard_normal((k, d)), covariances)


def direct_log_density(x, params):
    """log Σ_k π_k (2π)^(−D/2) det(Σ_k)^(−1/2) exp(−½ (x − μ_k)ᵀ Σ_k⁻¹ (x − μ_k)), term by term, no
    Cholesky and no log-space tricks (fine for points near the means)."""
    d = x.shape[1]
    total = numpy.zeros(len(x))
    for w, m, c in zip(params.weights, params.means, params.covariances, strict=True):
        centred = x - m
        mahalanobis = numpy.einsum("ni,ij,nj->n", centred, numpy.linalg.inv(c), centred)
        total += (
            w * (2 * math.pi) ** (-d / 2) / math.sqrt(numpy.linalg.det(c)) * numpy.exp(-0.5 * mahalanobis)
        )
    return numpy.log(total)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_mixture_log_density_matches_the_direct_formula(d):
    rng = numpy.random.default_rng(d)
    params = random_mixture(rng, 4, d)
    x = params.means[rng.integers(4, size=50)] + rng.standard_normal((50, d))  # (50, D) near the means
    numpy.testing.assert_allclose(em.log_marginal(x, params), direct_log_density(x, params), rtol=1e-10)


def test_log_density_stays_finite_far_from_every_mode():
    """Where every density underflows to 0, logsumexp still gives log p(x) (≈ −5·10⁷, not −inf)."""
    params = em.ring_mixture()
    far = numpy.array([[1e3, -1e3]])
    log_px = em.log_marginal(far, params)
    assert numpy.isfinite(log_px).all() and log_px[0] < -1e7
    assert numpy.isclose(numpy.exp(em.e_step(far, params)).sum(), 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_responsibilities_sum_to_one(seed):
    rng = numpy.random.default_rng(seed)
    params = random_mixture(rng, 5, 2)
    x = 4 * rng.standard_normal((200, 2))
    resp = numpy.exp(em.e_step(x, params))  # (N, K)
    assert (resp >= 0).all()
    numpy.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_after_the_e_step_the_elbo_equals_log_px(seed):
    """q = p(z|x) makes KL(q ‖ p(z|x)) = 0: the bound touches, point by point, to rounding."""
    rng = numpy.random.default_rng(seed)
    params = random_mixture(rng, 6, 2)
    x = params.means[rng.integers(6, size=300)] + rng.standard_normal((300, 2))
    gap = em.log_marginal(x, params) - em.elbo(x, params, em.e_step(x, params))
    assert numpy.abs(gap).max() < 1e-9, numpy.abs(gap).max()


def test_the_elbo_of_any_other_q_is_below_log_px():
    """For any q(z) the ELBO is a lower bound, and the gap is KL(q ‖ p(z|x)) exactly."""
    rng = numpy.random.default_rng(3)
    params = random_mixture(rng, 4, 2)
    x = 2 * rng.standard_normal((100, 2))
    logits = rng.standard_normal((100, 4))
    log_q = logits - em.logsumexp(logits, axis=1)[:, None]
    log_post = em.e_step(x, params)
    kl = (numpy.exp(log_q) * (log_q - log_post)).sum(axis=1)
    gap = em.log_marginal(x, params) - em.elbo(x, params, log_q)
    assert (gap > 0).all()
    numpy.testing.assert_allclose(gap, kl, rtol=1e-9, atol=1e-12)


def perturbations(params, rng, size):
    """The M-step's answer moved a little in each kind of parameter, one at a time."""
    k, d = params.means.shape
    weights = params.weights * numpy.exp(size * rng.standard_normal(k))
    yield dataclass_replace(params, weights=weights / weights.sum())
    yield dataclass_replace(params, means=params.means + size * rng.standard_normal((k, d)))
    b = rng.standard_normal((k, d, d))
    symmetric = size * (b + b.transpose(0, 2, 1)) / 2
    yield dataclass_replace(params, covariances=params.covariances + symmetric)
    yield dataclass_replace(params, covariances=params.covariances * (1 + size))
    yield dataclass_replace(params, covariances=params.covariances * (1 - size))


def dataclass_replace(params, **changes):
    fields = {"weights": params.weights, "means": params.means, "covariances": params.covariances}
    fields.update(changes)
    return em.Mixture(**fields)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_m_step_maximises_the_elbo(seed):
    """For fixed responsibilities, every small move away from the closed-form parameters lowers the ELBO."""
    rng = numpy.random.default_rng(seed)
    x, _ = data.make_toy("ring", "train", n=1000)
    start = em.initial_mixture(x, 8, rng)
    log_resp = em.e_step(x, start)
    best = em.m_step(x, log_resp, min_variance=0.0)
    top = em.elbo(x, best, log_resp).sum()
    assert top > em.elbo(x, start, log_resp).sum()
    for size in (1e-2, 1e-3):
        for moved in perturbations(best, rng, size):
            assert em.elbo(x, moved, log_resp).sum() < top


@pytest.mark.parametrize("toy", ["ring", "moons"])
@pytest.mark.parametrize("k", [2, 5, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_log_likelihood_never_decreases(toy, k, seed):
    x, _ = data.make_toy(toy, "train", n=1500)
    _, trace = em.fit(x, k, iterations=40, rng=numpy.random.default_rng(seed))
    log_px = [t["log_px"] for t in trace] + [trace[-1]["log_px_m"]]
    assert min(numpy.diff(log_px)) >= -1e-10, numpy.diff(log_px)
    for t, following in zip(trace, trace[1:], strict=False):
        assert t["elbo_m"] <= t["log_px_m"] + 1e-12  # after the M-step the old q is no longer p(z|x)
        assert t["elbo_m"] >= t["elbo_e"] - 1e-12  # the M-step raised the bound
        assert t["log_px_m"] == following["log_px"]  # the next E-step starts where the M-step ended


def test_ring_mixture_is_the_density_of_data_ring():
    """em.ring_mixture's defaults are data.ring's, and data.ring's labels pick its components."""
    ring_defaults = {
        k: v.default
        for k, v in inspect.signature(data.ring).parameters.items()
        if k in ("modes", "radius", "std")
    }
    mixture_defaults = {k: v.default for k, v in inspect.signature(em.ring_mixture).parameters.items()}
    assert ring_defaults == mixture_defaults
    points, labels = data.ring(80_000, numpy.random.default_rng(0))
    truth = em.ring_mixture()
    for k in range(8):
        mine = points[labels == k]
        numpy.testing.assert_allclose(mine.mean(axis=0), truth.means[k], atol=0.005)
        numpy.testing.assert_allclose(numpy.cov(mine.T), truth.covariances[k], atol=0.0006)


def test_a_fit_started_at_the_truth_stays_near_it():
    x, _ = data.make_toy("ring", "train")
    truth = em.ring_mixture()
    fitted, trace = em.fit(x, init=truth, iterations=30)
    numpy.testing.assert_allclose(fitted.weights, truth.weights, atol=0.01)
    numpy.testing.assert_allclose(fitted.means, truth.means, atol=0.01)
    numpy.testing.assert_allclose(fitted.covariances, truth.covariances, atol=0.001)
    assert trace[-1]["log_px_m"] >= trace[0]["log_px"]  # the truth is not the sample's maximum-likelihood fit
