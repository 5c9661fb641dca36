"""The diffusion model is the Markovian HVAE of Luo 2022 with a fixed encoder: each identity of
:mod:`tinyvae.models.diffusion`'s docstring checked against an independent computation.

* The forward chain: q(x_t | x_0) in one step (ᾱ_t) matches the chain run step by step (a statistical test
  on 40,000 chains, bounds of 5 standard errors); q(x_{t−1} | x_t, x_0) matches Bayes' rule written as a
  product of Gaussians (float64, exact to rounding).
* The ELBO: its decomposed form (reconstruction, prior matching, denoising matching; Luo eq. 58) has the
  same expectation as its first form E_q[log p(x_{0:T}) − log q(x_{1:T} | x_0)] (Luo eq. 45), and the
  training loss's one-step estimate is unbiased for it (each a 5-standard-error bound with fixed seeds);
  KL_t = λ_t ‖ε − ε_θ‖² exactly (the relation between L_simple and the bound).
* The sampler: with ε_θ replaced by the exact optimum for Gaussian data, ancestral samples have the data's
  variance.
* Gradients of both objectives agree with finite differences (float64, tanh so there are no kinks).
"""

import math

import numpy
import pytest

import tinyvae as tv
from tinyvae import evaluate, models
from tinyvae.models.diffusion import (
    PROBIT_TO_LOGIT,
    Diffusion,
    DiffusionConfig,
    NoiseSchedule,
    time_features,
)
from tinyvae.tensor import Tensor


def small(steps=4, likelihood="gaussian", x_dim=2, dtype="float64", **options):
    config = DiffusionConfig(
        x_dim=x_dim,
        hidden=(8,),
        likelihood=likelihood,
        steps=steps,
        activation="tanh",
        dtype=dtype,
        **options,
    )
    return Diffusion(config)


def within(a, b, standard_error, bound=5.0):
    assert abs(a - b) <= bound * standard_error, (
        f"{a} vs {b}: {abs(a - b) / standard_error:.1f} standard errors"
    )


# ----- the schedule and the forward chain -----
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_destroys_the_signal(schedule):
    """ᾱ_t = Π α_s falls from 1 towards 0 (x_T is noise), β_t stays in (0, 1), σ_t² ≤ β_t."""
    s = NoiseSchedule(1000, schedule)
    assert s.alpha_bar[0] == 1.0 and numpy.all(numpy.diff(s.alpha_bar) < 0)
    assert s.alpha_bar[-1] < 1e-4
    numpy.testing.assert_allclose(s.alpha_bar[1:], numpy.cumprod(1 - s.beta[1:]), rtol=1e-12)
    assert numpy.all((s.beta[1:] > 0) & (s.beta[1:] < 1))
    assert numpy.all(s.sigma2[2:] <= s.beta[2:] + 1e-15)


def test_one_step_marginal_matches_the_chain_run_step_by_step():
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε has the mean and variance of T steps x_t = √α_t x_{t−1} + √β_t ε_t
    (40,000 chains from x_0 = 1.5, at t = 10, 50 and 100 of the cosine schedule)."""
    s = NoiseSchedule(100, "cosine")
    rng = numpy.random.default_rng(0)
    n = 40_000
    x = numpy.full(n, 1.5)
    for t in range(1, 101):
        x = math.sqrt(s.alpha[t]) * x + math.sqrt(s.beta[t]) * rng.standard_normal(n)
        if t in (10, 50, 100):
            mean, var = math.sqrt(s.alpha_bar[t]) * 1.5, 1 - s.alpha_bar[t]
            within(x.mean(), mean, math.sqrt(var / n))
            within(x.var(), var, var * math.sqrt(2 / n))


def test_forward_posterior_is_bayes_rule():
    """q(x_{t−1} | x_t, x_0) ∝ q(x_t | x_{t−1}) q(x_{t−1} | x_0): precisions add, and the mean is the
    precision-weighted mean of √ᾱ_{t−1} x_0 and x_t / √α_t; every t ≥ 2 of a 50-step chain."""
    model = small(steps=50)
    s = model.schedule
    rng = numpy.random.default_rng(1)
    t = numpy.arange(2, 51)
    x0, x_t = rng.normal(size=(len(t), 2)), rng.normal(size=(len(t), 2))
    mean, logvar = model.forward_posterior(Tensor(x0), Tensor(x_t), t)
    prior_var = 1 - s.alpha_bar[t - 1]  # q(x_{t−1} | x_0)
    precision = 1 / prior_var + s.alpha[t] / s.beta[t]
    expected_mean = (
        numpy.sqrt(s.alpha_bar[t - 1])[:, None] * x0 / prior_var[:, None]
        + numpy.sqrt(s.alpha[t])[:, None] * x_t / s.beta[t][:, None]
    ) / precision[:, None]
    numpy.testing.assert_allclose(mean.numpy(), expected_mean, rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(numpy.exp(logvar[:, 0]), 1 / precision, rtol=1e-10)


# ----- the ELBO -----
def test_denoising_kl_is_the_weighted_noise_error():
    """KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) = λ_t ‖ε − ε_θ(x_t, t)‖² with λ_t = β_t² / (2 σ_t² α_t
    (1 − ᾱ_t)) (Luo eq. 130): L_simple is the bound with the weights λ_t dropped. Float64, every t ≥ 2."""
    model = small(steps=30)
    rng = numpy.random.default_rng(2)
    t = numpy.arange(2, 31)
    x = rng.normal(size=(len(t), 2))
    eps = rng.normal(size=(len(t), 2))
    terms, eps_hat = model.step_terms(Tensor(x), Tensor(x), t, eps)
    error = ((eps - eps_hat.numpy()) ** 2).sum(axis=1)
    numpy.testing.assert_allclose(terms.numpy(), model.schedule.elbo_weight(t) * error, rtol=1e-9)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_decomposed_elbo_has_the_expectation_of_the_joint_form(likelihood):
    """E[reconstruction − prior matching − Σ_t denoising matching] (Luo eq. 58, each KL in closed form) equals
    E_q[log p(x_{0:T}) − log q(x_{1:T} | x_0)] (Luo eq. 45, the whole chain sampled): 20,000 draws of each
    for one example under a 4-step chain, means within 5 combined standard errors. A wrong posterior mean,
    variance or weight in either form moves its mean by far more (checked in the next test)."""
    model = small(steps=4, likelihood=likelihood, x_dim=3, schedule="linear", beta_start=0.05, beta_end=0.3)
    x = numpy.array([[1.0, 0.0, 1.0]]) if likelihood == "bernoulli" else numpy.array([[0.7, -0.4, 1.2]])
    batch = numpy.repeat(x, 20_000, axis=0)
    terms = model.elbo_terms(batch, numpy.random.default_rng(3))
    decomposed = sum(terms.values())
    joint = model.log_joint_ratio(batch, numpy.random.default_rng(4))
    error = math.sqrt(decomposed.var() / len(batch) + joint.var() / len(batch))
    within(decomposed.mean(), joint.mean(), error)
    assert abs(decomposed.mean() - joint.mean()) < 0.05 * abs(joint.mean()) + 0.5


def test_the_comparison_above_catches_a_wrong_posterior_variance(monkeypatch):
    """The same comparison with β̃_t replaced by β_t in q(x_{t−1} | x_t, x_0) fails: the test can fail."""
    model = small(steps=4, x_dim=3, schedule="linear", beta_start=0.05, beta_end=0.3)
    model.schedule.posterior_variance = model.schedule.beta.copy()
    batch = numpy.repeat(numpy.array([[0.7, -0.4, 1.2]]), 20_000, axis=0)
    decomposed = sum(model.elbo_terms(batch, numpy.random.default_rng(3)).values())
    joint = model.log_joint_ratio(batch, numpy.random.default_rng(4))
    error = math.sqrt(decomposed.var() / len(batch) + joint.var() / len(batch))
    assert abs(decomposed.mean() - joint.mean()) > 5 * error


@pytest.mark.parametrize("objective", ["simple", "elbo"])
def test_training_estimate_of_the_elbo_is_unbiased(objective):
    """The loss's ``.elbo`` (one step t ~ U{1..T} per example, T times its term) has the mean of the full
    sum of all T terms: 40,000 draws each for one example, within 5 combined standard errors; the named
    terms add up to it draw by draw."""
    model = small(steps=6, objective=objective, schedule="linear", beta_start=0.02, beta_end=0.2)
    batch = numpy.repeat(numpy.array([[0.3, -1.1]]), 40_000, axis=0)
    result = model.loss(batch, numpy.random.default_rng(5))
    full = sum(model.elbo_terms(batch, numpy.random.default_rng(6)).values())
    error = math.sqrt(result.elbo.var() / len(batch) + full.var() / len(batch))
    within(result.elbo.mean(), full.mean(), error)
    numpy.testing.assert_allclose(
        result.reconstruction - result.prior_matching - result.denoising_matching, result.elbo, rtol=1e-9
    )


def test_loss_of_the_elbo_objective_is_minus_the_mean_elbo_and_simple_is_the_noise_error():
    model = small(objective="elbo")
    x = numpy.random.default_rng(7).normal(size=(16, 2))
    result = model.loss(x, numpy.random.default_rng(8))
    numpy.testing.assert_allclose(result.loss.item(), -result.elbo.mean(), rtol=1e-12)
    simple = small(objective="simple").loss(x, numpy.random.default_rng(8))
    assert simple.loss.item() > 0
    numpy.testing.assert_allclose(simple.elbo, result.elbo, rtol=1e-12)  # same weights, same noise


def test_prior_matching_is_the_closed_form_kl():
    """KL(N(√ᾱ_T x_0, 1 − ᾱ_T) ‖ N(0, 1)) = ½ Σ (ᾱ_T x_0² + (1 − ᾱ_T) − log(1 − ᾱ_T) − 1)."""
    model = small(steps=10, schedule="linear", beta_start=0.05, beta_end=0.3)
    x0 = numpy.array([[1.0, -2.0], [0.0, 0.5]])
    ab = model.schedule.alpha_bar[-1]
    expected = 0.5 * (ab * x0**2 + (1 - ab) - math.log(1 - ab) - 1).sum(axis=1)
    numpy.testing.assert_allclose(model.prior_matching(Tensor(x0)).numpy(), expected, rtol=1e-12)


def test_bernoulli_end_is_the_discretised_last_step():
    """p(x = 1 | x_1) = sigmoid(1.702 μ / σ_1) is within 0.0095 of Φ(μ / σ_1) = P(N(μ, σ_1²) > 0), the
    two-bin discretisation of the last reverse step (Ho et al. 2020 Sec. 3.3)."""
    model = small(likelihood="bernoulli", x_dim=4)
    x1 = Tensor(numpy.random.default_rng(9).normal(scale=0.02, size=(50, 4)))
    mean = model.reverse_mean(x1, numpy.ones(50, dtype=int)).numpy()
    sigma = math.sqrt(model.schedule.sigma2[1])
    probability = model.decode(x1.numpy())
    normal_cdf = numpy.vectorize(lambda u: 0.5 * (1 + math.erf(u / math.sqrt(2))))(mean / sigma)
    assert numpy.abs(probability - normal_cdf).max() < 0.0095
    assert PROBIT_TO_LOGIT == pytest.approx(1.702)


def test_pixelwise_denoiser_is_the_posterior_mean_of_independent_binary_pixels():
    """For x_0,i = ±1 with P(+1) = sigmoid(2 b_i), Bayes' rule with the two likelihoods N(x_t; ±√ᾱ_t, 1 − ᾱ_t)
    gives E[x_0,i | x_t,i]; the pixel-wise term is (x_t − √ᾱ_t E[x_0 | x_t]) / √(1 − ᾱ_t), float64, at steps
    from 1 (a near-certain sign) to T (near-pure noise)."""
    model = small(steps=100, likelihood="bernoulli", x_dim=3)
    model.pixel_logits.data[...] = [-1.0, 0.0, 0.7]
    rng = numpy.random.default_rng(17)
    t = numpy.array([1, 2, 10, 50, 100])
    x_t = rng.normal(size=(len(t), 3))
    ab = model.schedule.alpha_bar[t][:, None]
    prior_plus = 1 / (1 + numpy.exp(-2 * model.pixel_logits.numpy()))
    log_plus = numpy.log(prior_plus) - (x_t - numpy.sqrt(ab)) ** 2 / (2 * (1 - ab))
    log_minus = numpy.log(1 - prior_plus) - (x_t + numpy.sqrt(ab)) ** 2 / (2 * (1 - ab))
    posterior_plus = 0.5 * (1 + numpy.tanh(0.5 * (log_plus - log_minus)))  # sigmoid, without overflow
    expected = (x_t - numpy.sqrt(ab) * (2 * posterior_plus - 1)) / numpy.sqrt(1 - ab)
    got = model.pixelwise_noise(Tensor(x_t), t).numpy()
    numpy.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_the_network_is_added_to_the_pixelwise_denoiser_on_binary_pixels_only(monkeypatch):
    x_t, t = Tensor(numpy.full((2, 3), 0.5)), numpy.array([2, 4])
    binary, real = small(likelihood="bernoulli", x_dim=3), small(likelihood="gaussian", x_dim=3)
    numpy.testing.assert_allclose(
        binary.predict_noise(x_t, t).numpy(),
        binary.noise_predictor(x_t, t).numpy() + binary.pixelwise_noise(x_t, t).numpy(),
    )
    numpy.testing.assert_array_equal(real.predict_noise(x_t, t).numpy(), real.noise_predictor(x_t, t).numpy())
    assert not hasattr(real, "pixel_logits")


# ----- gradients -----
@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("objective", ["simple", "elbo"])
def test_gradients_of_the_objective_match_finite_differences(objective, likelihood):
    """Every parameter of ε_θ, float64, the noise held fixed (a fresh Generator with the same seed in
    each evaluation); tanh hidden units, so the function is smooth. Tolerance: gradcheck's default
    rtol 1e-5, far above float64 rounding at these scales."""
    model = small(
        steps=5, objective=objective, likelihood=likelihood, schedule="linear", beta_start=0.05, beta_end=0.3
    )
    x = numpy.random.default_rng(10).normal(size=(6, 2))
    if likelihood == "bernoulli":
        x = (x > 0).astype(float)
    for name, parameter in model.named_parameters():
        assert tv.gradcheck(
            lambda p: model.loss(x, numpy.random.default_rng(11)).loss, [parameter], name=f"diffusion {name}"
        )


# ----- sampling -----
def test_ancestral_sampling_with_the_optimal_noise_predictor_recovers_the_data_variance(monkeypatch):
    """For data N(0, s²) the optimal ε_θ(x_t, t) = √(1 − ᾱ_t) x_t / (ᾱ_t s² + 1 − ᾱ_t) (Tweedie's formula);
    with it, 20,000 ancestral samples of a 200-step chain have standard deviation s within 3% (the
    discretisation of the reverse chain and sampling noise; measured 0.4%) and mean 0 within 5 standard
    errors. A sign or scale error in μ_θ or in σ_t breaks this by far more."""
    s_data = 0.5
    model = small(steps=200, x_dim=1)
    alpha_bar = model.schedule.alpha_bar

    def optimal(x_t, t):
        ab = alpha_bar[t][:, None]
        return Tensor(numpy.sqrt(1 - ab) * x_t.numpy() / (ab * s_data**2 + 1 - ab))

    monkeypatch.setattr(model, "noise_predictor", optimal)
    samples = model.sample(20_000, numpy.random.default_rng(12))
    assert abs(samples.std() / s_data - 1) < 0.03
    within(samples.mean(), 0.0, s_data / math.sqrt(len(samples)))


def test_sample_chain_keeps_the_requested_states_and_starts_from_noise():
    model = small(steps=20, x_dim=2)
    x1, kept = model.prior.sample_chain(5000, numpy.random.default_rng(13), keep={20, 10, 1})
    assert set(kept) == {20, 10, 1} and x1.shape == (5000, 2)
    numpy.testing.assert_array_equal(kept[1], x1)
    assert abs(kept[20].std() - 1) < 0.05  # x_T ~ N(0, I)


# ----- the features, the config, the interface -----
def test_time_features_are_sinusoids_that_tell_steps_apart():
    features = time_features(numpy.array([1, 2, 500]), 8)
    assert features.shape == (3, 8)
    numpy.testing.assert_allclose(features[:, :4] ** 2 + features[:, 4:] ** 2, 1.0)
    assert numpy.linalg.norm(features[0] - features[1]) < numpy.linalg.norm(features[0] - features[2])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"z_dim": 3}, "z_dim must equal x_dim = 2"),
        ({"steps": 1}, "steps (T) must be an integer >= 2"),
        ({"schedule": "quadratic"}, "schedule must be one of"),
        ({"objective": "vlb"}, "objective must be one of"),
        ({"beta_start": 0.1, "beta_end": 0.01}, "0 < beta_start <= beta_end < 1"),
        ({"beta_end": 1.0}, "0 < beta_start <= beta_end < 1"),
        ({"time_features": 7}, "time_features must be even"),
        ({"steps_per_example": 0}, "steps_per_example must be a positive integer"),
    ],
)
def test_config_refuses_bad_values_naming_them(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DiffusionConfig(x_dim=2, **fields)


def test_steps_per_example_averages_the_estimate_per_example():
    model = small(steps_per_example=3)
    x = numpy.random.default_rng(14).normal(size=(4, 2))
    result = model.loss(x, numpy.random.default_rng(15))
    assert result.elbo.shape == (4,) and result.reconstruction.shape == (4,)


def test_evaluate_report_gives_the_elbo_and_terms_that_sum_to_it():
    """``evaluate.report`` (what ``tinyvae evaluate`` writes) carries elbo and elbo_terms for diffusion and
    for the hierarchical VAE; the terms' means sum to the ELBO, and the KL terms enter negative."""
    diffusion = small(steps=5)
    hvae = models.build("hvae", x_dim=2, z_dims=(2, 1), hidden=(8,), likelihood="gaussian")
    x = numpy.random.default_rng(16).normal(size=(40, 2))
    for model, kls in ((diffusion, ("prior_matching", "denoising_matching")), (hvae, ("kl_1", "kl_2"))):
        values = evaluate.report(model, x, k=4, rng=0)
        terms = values["elbo_terms"]
        assert set(kls) < set(terms) and "reconstruction" in terms
        assert values["elbo"] == pytest.approx(sum(terms.values()), rel=1e-6)  # the HVAE is float32
        assert all(terms[name] <= 1e-12 for name in kls if name != "kl_1")  # true KLs are ≥ 0
    assert models.build("vae", x_dim=2, z_dim=2).elbo_terms(x, None) is None


def test_run_defaults_choose_a_deeper_network_on_toys():
    assert Diffusion.run_defaults(toy=True) == {
        "hidden": (256, 256, 256),
        "steps_per_example": 32,
        "schedule": "cosine",
    }
    assert Diffusion.run_defaults(toy=False) == {"hidden": (512, 512), "steps_per_example": 4}
    assert models.VAE.run_defaults(toy=True) == {"hidden": (64, 64)}


# ----- from the command line -----
def test_command_line_trains_evaluates_and_draws_the_chain(tmp_path):
    """`tinyvae train --model diffusion` on the ring (a 50-step chain, 256 points, one epoch), then
    `tinyvae evaluate`: evaluation.json holds elbo and elbo_terms (summing to it), and the run directory
    the model's two figures; on digits the chain figure is drawn as images."""
    import json

    import matplotlib.image

    from tinyvae import cli

    out = tmp_path / "ring"
    common = ["--model", "diffusion", "--steps", "50", "--epochs", "1", "--no-progress"]
    assert cli.main(["train", *common, "--data", "ring", "--limit", "256", "--out", str(out)]) == 0
    assert cli.main(["evaluate", str(out), "--limit", "64"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report["elbo_terms"]) == {"reconstruction", "prior_matching", "denoising_matching"}
    assert report["elbo"] == pytest.approx(sum(report["elbo_terms"].values()), rel=1e-9)
    for name in Diffusion.figure_names:
        assert matplotlib.image.imread(out / name).std() > 0.01, name
    digits = tmp_path / "digits"
    args = ["--data", "mnist5k", "--limit", "128", "--hidden", "32", "--out", str(digits)]
    assert cli.main(["train", *common, *args]) == 0
    chain = matplotlib.image.imread(digits / "diffusion_chain.png")
    assert chain.std() > 0.01 and chain.shape[:2] == (580, 700)  # 8 chains of digits × 10 steps, 100 dpi


# ----- the moving average of the weights -----
def test_training_updates_the_average_and_sampling_uses_it():
    """Each training loss moves the average towards θ by 1 − d, d = min(weight_average, (1 + k)/(10 + k));
    decode, sampling and test metrics (eval mode) run with the average, the training loss with θ, which is
    put back afterwards."""
    model = small(weight_average=0.5)
    name, parameter = next(iter(model.named_parameters()))
    before = model.average[name].copy()
    parameter.data += 1.0  # an optimiser step
    model.training_steps = 20  # past the warm-up: d = min(0.5, 21/30) = 0.5
    x = numpy.random.default_rng(18).normal(size=(4, 2))
    model.loss(x, numpy.random.default_rng(0))
    numpy.testing.assert_allclose(model.average[name], 0.5 * before + 0.5 * (before + 1.0), rtol=1e-12)
    z = numpy.random.default_rng(19).normal(size=(3, 2))
    trained = model.decode(z)
    with model.averaged_weights():
        averaged = Diffusion.decode_logits(model, Tensor(z)).numpy()
    numpy.testing.assert_allclose(trained, averaged, rtol=1e-12)  # decode ran with the average
    numpy.testing.assert_array_equal(parameter.numpy(), before + 1.0)  # θ is back
    model.eval()
    with model.averaged_weights():
        expected = model.loss(x, numpy.random.default_rng(1)).elbo
    numpy.testing.assert_allclose(model.loss(x, numpy.random.default_rng(1)).elbo, expected, rtol=1e-12)


def test_without_weight_averaging_the_trained_weights_sample():
    model = small(weight_average=0.0)
    name, parameter = next(iter(model.named_parameters()))
    parameter.data += 1.0
    z = numpy.random.default_rng(20).normal(size=(3, 2))
    numpy.testing.assert_allclose(model.decode(z), Diffusion.decode_logits(model, Tensor(z)).numpy())


def test_the_average_is_saved_and_loaded(tmp_path):
    from tinyvae import checkpoint

    model = small(weight_average=0.9)
    for _, p in model.named_parameters():
        p.data += 0.25
    model.loss(numpy.ones((2, 2)), numpy.random.default_rng(0))
    path = str(tmp_path / "d.npz")
    checkpoint.save_checkpoint(path, model, tv.optim.Adam(model.parameters()), epoch=1)
    loaded, _ = checkpoint.load_model(path)
    for name, average in model.average.items():
        numpy.testing.assert_array_equal(loaded.average[name], average)
    state = model.state_dict()
    del state[f"average.{name}"]
    with pytest.raises(KeyError, match="missing keys"):
        small(weight_average=0.9).load_state_dict(state)
