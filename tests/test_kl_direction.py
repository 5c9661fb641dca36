"""tinyvae.kl_fit: one Gaussian q fitted to a two-mode p. Minimising KL(q ‖ p) puts q on a mode;
minimising KL(p ‖ q) puts it between the modes, wide enough to cover both, and equals moment matching."""

from __future__ import annotations

import numpy
import pytest

from tinyvae import kl_fit
from tinyvae.tensor import Tensor

TARGET = kl_fit.TwoModes()
HALF_DISTANCE = (max(TARGET.means) - min(TARGET.means)) / 2


def test_engine_log_prob_matches_the_numpy_density():
    z = numpy.linspace(-8, 8, 101)
    engine = TARGET.log_prob(Tensor(z, dtype=numpy.float64)).numpy()
    numpy.testing.assert_allclose(engine, TARGET.log_density(z), rtol=1e-12)
    assert numpy.isfinite(TARGET.log_density(numpy.array([1e3]))).all()  # the logsumexp shift


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reverse_kl_seeks_a_mode(seed):
    mu, sigma, _ = kl_fit.fit_reverse_kl(TARGET, numpy.random.default_rng(seed), steps=1500)
    assert min(abs(mu - m) for m in TARGET.means) < 0.1, mu
    assert abs(sigma - TARGET.stds[0]) < 0.1, sigma  # as narrow as one mode


def test_the_start_picks_the_mode():
    mu, _, _ = kl_fit.fit_reverse_kl(TARGET, numpy.random.default_rng(0), steps=1500, init=(-0.5, 0.0))
    assert abs(mu - min(TARGET.means)) < 0.1, mu


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_kl_covers_both_modes_and_is_moment_matching(seed):
    samples = TARGET.sample(20_000, numpy.random.default_rng(seed))
    mu, sigma, _ = kl_fit.fit_forward_kl(samples)
    assert min(TARGET.means) + HALF_DISTANCE / 2 < mu < max(TARGET.means) - HALF_DISTANCE / 2, mu
    assert sigma**2 >= HALF_DISTANCE**2, sigma
    # The gradient fit reaches the exact optimum on its sample: that sample's mean and std ...
    sample_mu, sample_sigma = kl_fit.sample_moments(samples)
    assert abs(mu - sample_mu) < 1e-4 and abs(sigma - sample_sigma) < 1e-4, (mu, sigma)
    # ... which are p's moments (the closed form) up to sampling error (4 standard errors).
    exact_mu, exact_sigma = kl_fit.moment_match(TARGET)
    assert abs(mu - exact_mu) < 4 * exact_sigma / numpy.sqrt(len(samples))
    assert abs(sigma - exact_sigma) < 4 * exact_sigma / numpy.sqrt(2 * len(samples))


def test_moment_match_closed_form():
    target = kl_fit.TwoModes(weights=(0.3, 0.7), means=(-1.0, 3.0), stds=(0.5, 1.0))
    mean, std = kl_fit.moment_match(target)
    assert mean == pytest.approx(0.3 * -1 + 0.7 * 3)
    assert std**2 == pytest.approx(0.3 * (0.25 + 1) + 0.7 * (1 + 9) - mean**2)


def test_each_fit_wins_its_own_divergence():
    reverse = kl_fit.fit_reverse_kl(TARGET, numpy.random.default_rng(0), steps=1500)[:2]
    forward = kl_fit.moment_match(TARGET)
    of_reverse = kl_fit.kl_both_ways(TARGET, *reverse, 100_000, numpy.random.default_rng(1))
    of_forward = kl_fit.kl_both_ways(TARGET, *forward, 100_000, numpy.random.default_rng(1))
    assert of_reverse["reverse"][0] < of_forward["reverse"][0]
    assert of_forward["forward"][0] < of_reverse["forward"][0]
    assert of_reverse["reverse"][0] == pytest.approx(numpy.log(2), abs=0.01)  # q = one mode: p = q / 2 there
    for kls in (of_reverse, of_forward):  # KL(p ‖ q) = H(p, q) − H(p) on the same samples
        assert kls["forward"][0] == pytest.approx(kls["cross_entropy"][0] - kls["entropy"][0], abs=1e-9)
