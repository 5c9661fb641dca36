"""The VAE (and its beta / warm-up / free-bits options): gradients, the bound's pieces, the interface,
bad input, and that it trains."""

import numpy
import pytest
from training import prototype_dataset, train

import tinyvae as tv
from tinyvae.models import VAE, VAEConfig


def tiny_vae(**overrides):
    """A float64 VAE small enough for finite differences over every parameter."""
    settings = dict(x_dim=5, z_dim=2, hidden=(4,), activation="tanh", dtype="float64", seed=0)
    settings.update(overrides)
    return VAE(VAEConfig(**settings))


def binary_batch(n=3, x_dim=5, seed=1):
    return (numpy.random.default_rng(seed).uniform(size=(n, x_dim)) < 0.5).astype(numpy.float64)


def loss_with_fixed_noise(model, x, seed=2):
    """The loss as a function of the parameters, with the sampling noise held fixed (same seed each call)."""

    def loss(*_params):
        return model.loss(x, numpy.random.default_rng(seed)).loss

    return loss


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"likelihood": "gaussian", "gaussian_logvar": None},
        {"beta": 4.0},
        {"free_bits": 0.05},
        {"analytic_kl": False},
    ],
    ids=["bernoulli", "gaussian-learned-variance", "beta", "free-bits", "monte-carlo-kl"],
)
def test_vae_loss_passes_gradcheck_in_every_parameter(overrides, backend):
    """With the noise fixed, the negative (β-weighted) ELBO is a smooth function of every weight, and its
    backward pass matches finite differences."""
    model = tiny_vae(**overrides)
    x = (
        binary_batch()
        if model.config.likelihood == "bernoulli"
        else numpy.random.default_rng(1).normal(size=(3, 5))
    )
    model.eval()  # so the warm-up counter does not move between the evaluations
    assert tv.gradcheck(loss_with_fixed_noise(model, x), model.parameters(), name="VAE.loss")


def test_elbo_is_reconstruction_minus_kl_and_loss_is_its_negated_mean():
    """ELBO = E_q[log p(x|z)] − KL, per example; with β = 1 the loss is the negative batch-mean ELBO."""
    model = tiny_vae()
    result = model.loss(binary_batch(), numpy.random.default_rng(0))
    numpy.testing.assert_allclose(result.elbo, result.recon - result.kl)
    assert result.loss.item() == pytest.approx(-result.elbo.mean())
    assert result.elbo.shape == result.kl.shape == (3,)
    assert (result.kl >= 0).all()


def test_beta_weights_only_the_kl_term():
    """β scales the KL in the loss but not in the reported ELBO."""
    x, rng_seed = binary_batch(), 0
    plain = tiny_vae().loss(x, numpy.random.default_rng(rng_seed))
    weighted = tiny_vae(beta=3.0).loss(x, numpy.random.default_rng(rng_seed))
    numpy.testing.assert_allclose(weighted.elbo, plain.elbo)
    expected = 3.0 * plain.kl.mean() - plain.recon.mean()
    assert weighted.loss.item() == pytest.approx(expected)


def test_kl_warmup_ramps_linearly():
    """With warmup_steps = 4 the KL weight is β · step / 4 until it reaches β, counting training steps."""
    model = tiny_vae(beta=2.0, warmup_steps=4)
    weights = []
    for _ in range(6):
        weights.append(model.kl_weight())
        model.loss(binary_batch(), numpy.random.default_rng(0))
    assert weights == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    model.eval()
    model.loss(binary_batch(), numpy.random.default_rng(0))
    assert model.training_steps == 6  # evaluation does not advance the schedule


def test_free_bits_floor_removes_the_pull_of_small_kls():
    """Below the free-bits floor a latent dimension's KL has zero gradient: with a floor far above every
    dimension's KL, the encoder's gradient comes from reconstruction alone (equal to β = 0's)."""
    x = binary_batch()
    grads = {}
    for name, overrides in {"floor": {"free_bits": 100.0}, "no_kl": {"beta": 0.0}}.items():
        model = tiny_vae(**overrides)
        model.loss(x, numpy.random.default_rng(0)).loss.backward()
        grads[name] = [p.grad.copy() for p in model.encoder.parameters()]
    for a, b in zip(grads["floor"], grads["no_kl"], strict=True):
        numpy.testing.assert_allclose(a, b, atol=1e-12)


def test_monte_carlo_kl_agrees_with_the_analytic_kl():
    """The single-sample KL estimate log q(z|x) − log p(z) is unbiased: over 20,000 draws its mean is
    within 4 standard errors of the closed form."""
    model = tiny_vae(analytic_kl=False)
    x = numpy.repeat(binary_batch(n=1), 20_000, axis=0)
    estimate = model.loss(x, numpy.random.default_rng(3)).kl
    mu, logvar = model.encode(x[:1])
    exact = tv.functional.gaussian_kl(mu, logvar).item()
    standard_error = estimate.std(ddof=1) / numpy.sqrt(len(estimate))
    assert abs(estimate.mean() - exact) < 4 * standard_error


def test_log_weights_with_one_sample_equal_the_monte_carlo_elbo():
    """log p(x, z) − log q(z|x) at one sample is the ELBO estimate with a sampled KL, on the same noise."""
    model = tiny_vae(analytic_kl=False)
    x = binary_batch()
    weights = model.log_weights(x, 1, numpy.random.default_rng(5))
    result = model.loss(x, numpy.random.default_rng(5))
    numpy.testing.assert_allclose(weights.data[0], result.elbo, rtol=1e-12)


def test_interface_shapes_and_ranges():
    """reconstruct, sample, decode and interpolate return decoder means of the right shapes; Bernoulli
    means are probabilities; interpolation starts and ends at the decoded latent means."""
    model = tiny_vae()
    x = binary_batch(n=4)
    assert model.reconstruct(x).shape == (4, 5)
    samples = model.sample(6, numpy.random.default_rng(0))
    assert samples.shape == (6, 5) and ((samples > 0) & (samples < 1)).all()
    for method in ("linear", "slerp"):
        path = model.interpolate(x[0], x[1], steps=5, method=method)
        assert path.shape == (5, 5)
        numpy.testing.assert_allclose(path[[0, -1]], model.reconstruct(x[:2]), rtol=1e-10)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m: m.loss(numpy.zeros((2, 6)), numpy.random.default_rng(0)),
            r"x has shape \(2, 6\).*\(batch, 5\)",
        ),
        (lambda m: m.loss(numpy.full((2, 5), numpy.nan), numpy.random.default_rng(0)), "NaN or infinite"),
        (lambda m: m.sample(0, numpy.random.default_rng(0)), "n must be a positive integer"),
        (lambda m: m.interpolate(numpy.zeros(5), numpy.zeros(5), method="cubic"), "'linear' or 'slerp'"),
    ],
)
def test_bad_input_is_named(call, message):
    """Wrong shapes, non-finite data and bad arguments give errors that say what was expected."""
    with pytest.raises(ValueError, match=message):
        call(tiny_vae())


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"z_dim": 0}, "z_dim must be a positive integer"),
        ({"beta": -1.0}, "beta must be >= 0"),
        ({"likelihood": "poisson"}, "likelihood must be one of"),
        ({"free_bits": -0.1}, "free_bits must be >= 0"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    """Invalid settings fail when the config is built, naming the field."""
    with pytest.raises(ValueError, match=message):
        VAEConfig(**{"x_dim": 5, **overrides})


def test_vae_trains_on_a_small_synthetic_dataset():
    """On 512 binary vectors made from 4 prototypes with flipped bits, 300 Adam steps (float32) raise the
    ELBO by at least 30% of its starting value."""
    rng = numpy.random.default_rng(0)
    data, _, _ = prototype_dataset(rng)
    model = VAE(VAEConfig(x_dim=16, z_dim=2, hidden=(32,), seed=0))
    first, last, result = train(model, data, rng)
    assert last > first + 0.3 * abs(first), (first, last)


def test_the_elbo_with_l_samples_is_the_mean_of_l_single_sample_elbos_on_the_same_noise():
    """mc_samples = L (Kingma & Welling 2014, eq. 10): the reconstruction term is the mean over L
    reparameterised samples. With the noise fixed, it equals the average of the L one-sample estimates; its
    spread over seeds falls about as 1/√L (here L = 16: at least 3x smaller than L = 1); L = 1 draws exactly
    as before (the same numbers as the VAE's one-sample loss on the same generator)."""
    import numpy

    from tinyvae import models

    x = (numpy.random.default_rng(0).uniform(size=(6, 8)) < 0.4).astype(numpy.float64)
    common = {"x_dim": 8, "z_dim": 3, "hidden": (5,), "dtype": "float64"}
    many = models.build("vae", mc_samples=16, **common)
    one = models.build("vae", **common)
    result = many.loss(x, numpy.random.default_rng(1))
    eps = numpy.random.default_rng(1).standard_normal((16, 6, 3))
    singles = []
    for sample in eps:
        mu, logvar = (t.numpy() for t in one.encode(x))
        z = mu + numpy.exp(0.5 * logvar) * sample
        decoded = one.decode_logits(tv.Tensor(z))
        singles.append(one.likelihood.log_prob(decoded, tv.Tensor(x)).numpy())
    numpy.testing.assert_allclose(result.recon, numpy.mean(singles, axis=0), rtol=1e-10)
    spread = {
        L: numpy.std(
            [
                models.build("vae", mc_samples=L, **common).loss(x, numpy.random.default_rng(s)).elbo.mean()
                for s in range(40)
            ]
        )
        for L in (1, 16)
    }
    assert spread[16] < spread[1] / 3, spread
    numpy.testing.assert_allclose(
        models.build("vae", mc_samples=1, **common).loss(x, numpy.random.default_rng(5)).elbo,
        one.loss(x, numpy.random.default_rng(5)).elbo,
    )
