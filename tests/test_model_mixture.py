"""The mixture-of-Gaussians posterior: gradients, one component is the Gaussian VAE, the Monte-Carlo KL and
importance weights against NumPy references, the interface, bad settings, and that it trains."""

import numpy
import pytest
from training import train

import tinyvae as tv
from tinyvae.models import VAE, VAEConfig
from tinyvae.models.mixture import MixtureVAE, MixtureVAEConfig

SETTINGS = dict(x_dim=5, z_dim=2, hidden=(4,), activation="tanh", dtype="float64", seed=0)


def tiny_mixture(**overrides):
    """A float64 mixture VAE with 3 components, small enough for finite differences over every weight."""
    return MixtureVAE(MixtureVAEConfig(**{**SETTINGS, "components": 3, **overrides}))


def binary_batch(n=3, x_dim=5, seed=1):
    return (numpy.random.default_rng(seed).uniform(size=(n, x_dim)) < 0.5).astype(numpy.float64)


def spread_components(model):
    """Move the three components apart (means about (−2, 0), (0, 2), (2, −1), log σ² about −1, unequal
    weights) through the last encoder layer's bias, so q(z|x) is clearly multimodal."""
    bias = model.encoder.net.layers[-1].bias.data
    bias[:3] = [0.5, 0.0, -0.5]
    bias[3:9] = [-2.0, 0.0, 0.0, 2.0, 2.0, -1.0]
    bias[9:] = -1.0


def numpy_mixture_log_prob(z, log_pi, mu, logvar):
    """log Σ_k π_k N(z; μ_k, σ_k²) in NumPy, for z (N, Z) and one mixture (K,), (K, Z), (K, Z)."""
    diff = z[:, None, :] - mu  # (N, K, Z)
    log_n = -0.5 * (numpy.log(2 * numpy.pi) + logvar + diff**2 / numpy.exp(logvar)).sum(axis=-1)
    return numpy.logaddexp.reduce(log_n + log_pi, axis=-1)  # (N,)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"likelihood": "gaussian", "gaussian_logvar": None, "components": 2, "beta": 2.0}],
    ids=["bernoulli-k3", "gaussian-learned-variance-k2-beta"],
)
def test_mixture_loss_passes_gradcheck_in_every_parameter(overrides):
    """With the noise fixed, the stratified bound Σ_k π_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] is
    smooth in every weight (the mixture logits included, through π and through log q's logsumexp), and
    its backward pass matches finite differences in float64."""
    model = tiny_mixture(**overrides)
    gaussian = model.config.likelihood == "gaussian"
    x = numpy.random.default_rng(1).normal(size=(3, 5)) if gaussian else binary_batch()
    model.eval()

    def loss(*_params):
        return model.loss(x, numpy.random.default_rng(2)).loss

    assert tv.gradcheck(loss, model.parameters(), name="MixtureVAE.loss")


def test_one_component_is_exactly_the_gaussian_vae_with_a_sampled_kl():
    """With K = 1 the bound *equals* the VAE's single-sample ELBO with analytic_kl=False, to rounding
    (rtol 1e-12), not just in distribution: log_softmax of one logit is exactly 0 (π = 1), logsumexp of one
    term is that term, and the (1, B, Z) noise is the same stream of draws as the VAE's (B, Z). The VAE's
    weights are copied in (the mixture's last layer has one extra output, the logit, which then gets
    exactly zero gradient); the gradients of the shared weights agree too."""
    x = binary_batch(n=6)
    vae = VAE(VAEConfig(analytic_kl=False, **SETTINGS))
    mixture = MixtureVAE(MixtureVAEConfig(components=1, **SETTINGS))
    theirs = dict(vae.named_parameters())
    for name, param in mixture.named_parameters():
        source = theirs[name].data
        if name.startswith("encoder.net.layers.1."):  # outputs: [logit | μ | log σ²] vs [μ | log σ²]
            param.data[..., 1:] = source
        else:
            param.data[...] = source
    ours = mixture.loss(x, numpy.random.default_rng(7))
    reference = vae.loss(x, numpy.random.default_rng(7))
    numpy.testing.assert_allclose(ours.elbo, reference.elbo, rtol=1e-12)
    numpy.testing.assert_allclose(ours.kl, reference.kl, rtol=1e-12, atol=1e-14)
    numpy.testing.assert_allclose(ours.recon, reference.recon, rtol=1e-12)
    ours.loss.backward()
    reference.loss.backward()
    for name, param in mixture.named_parameters():
        grad = param.grad[..., 1:] if name.startswith("encoder.net.layers.1.") else param.grad
        numpy.testing.assert_allclose(grad, theirs[name].grad, rtol=1e-10, atol=1e-14)
    numpy.testing.assert_array_equal(mixture.encoder.net.layers[1].bias.grad[0], 0.0)


def test_monte_carlo_kl_agrees_with_a_numpy_reference_estimate():
    """The model's stratified KL estimate Σ_k π_k [log q(z_k|x) − log p(z_k)] (5,000 draws) and a plain
    NumPy Monte-Carlo estimate of KL(q ‖ N(0, I)) = E_q[log q − log p] by ancestral sampling (component
    from π, then the Gaussian; 100,000 draws) agree within 4 combined standard errors, for a clearly
    multimodal q. Both estimate the same number; only the NumPy one is independent of the model's code."""
    model = tiny_mixture()
    spread_components(model)
    x = binary_batch(n=1)
    estimate = model.loss(numpy.repeat(x, 5_000, axis=0), numpy.random.default_rng(3)).kl

    log_pi, mu, logvar = (t.data[0] for t in model.encode(x))  # (K,), (K, Z), (K, Z)
    assert numpy.exp(log_pi).min() > 0.15 and numpy.ptp(mu[:, 0]) > 2  # multimodal, every mode weighted
    rng = numpy.random.default_rng(4)
    n = 100_000
    component = rng.choice(3, size=n, p=numpy.exp(log_pi))
    z = mu[component] + numpy.exp(0.5 * logvar[component]) * rng.standard_normal((n, 2))
    log_p = -0.5 * (numpy.log(2 * numpy.pi) + z**2).sum(axis=-1)
    reference = numpy_mixture_log_prob(z, log_pi, mu, logvar) - log_p

    def standard_error(a):
        return a.std(ddof=1) / numpy.sqrt(len(a))

    gap = abs(estimate.mean() - reference.mean())
    assert gap < 4 * numpy.hypot(standard_error(estimate), standard_error(reference)), (gap, estimate.mean())


def test_log_weights_sample_the_mixture_and_average_to_the_elbo():
    """log_weights draws the component from π and then z, and weighs by the full mixture density: their
    mean over 20,000 samples is an unbiased ELBO estimate, agreeing with the stratified bound's mean
    (5,000 draws) within 4 combined standard errors; one call returns shape (k, B)."""
    model = tiny_mixture()
    spread_components(model)
    x = binary_batch(n=1)
    weights = model.log_weights(x, 20_000, numpy.random.default_rng(5)).data[:, 0]
    elbo = model.loss(numpy.repeat(x, 5_000, axis=0), numpy.random.default_rng(6)).elbo
    se = numpy.hypot(weights.std(ddof=1) / numpy.sqrt(len(weights)), elbo.std(ddof=1) / numpy.sqrt(len(elbo)))
    assert abs(weights.mean() - elbo.mean()) < 4 * se
    assert model.log_weights(binary_batch(n=4), 3, numpy.random.default_rng(0)).shape == (3, 4)


def test_bound_pieces_and_interface():
    """ELBO = recon − kl per example and the loss is its negated batch mean (β = 1); encode gives
    normalised log-weights and per-component Gaussians; latent_mean is Σ_k π_k μ_k; reconstruct, sample
    and interpolate return decoder means of the right shapes."""
    model = tiny_mixture()
    x = binary_batch(n=4)
    result = model.loss(x, numpy.random.default_rng(0))
    numpy.testing.assert_allclose(result.elbo, result.recon - result.kl)
    assert result.loss.item() == pytest.approx(-result.elbo.mean())
    log_pi, mu, logvar = model.encode(x)
    assert log_pi.shape == (4, 3) and mu.shape == logvar.shape == (4, 3, 2)
    numpy.testing.assert_allclose(numpy.exp(log_pi.data).sum(axis=-1), 1.0)
    expected = (numpy.exp(log_pi.data)[..., None] * mu.data).sum(axis=1)
    numpy.testing.assert_allclose(model.latent_mean(model.check_x(x)), expected)
    assert model.reconstruct(x).shape == (4, 5)
    samples = model.sample(6, numpy.random.default_rng(0))
    assert samples.shape == (6, 5) and ((samples > 0) & (samples < 1)).all()
    path = model.interpolate(x[0], x[1], steps=5, method="slerp")
    numpy.testing.assert_allclose(path[[0, -1]], model.reconstruct(x[:2]), rtol=1e-10)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"components": 0}, "components must be an integer >= 1, got 0"),
        ({"components": 2.0}, "components must be an integer >= 1, got 2.0"),
        ({"free_bits": 0.5}, "free_bits must be 0 for the mixture posterior, got 0.5"),
        ({"beta": -1.0}, "beta must be >= 0"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    """Invalid settings fail when the config is built, naming the field and the value."""
    with pytest.raises(ValueError, match=message):
        MixtureVAEConfig(**{"x_dim": 5, **overrides})


def test_bad_input_is_named():
    """x of the wrong width is refused with its shape and the expected one."""
    with pytest.raises(ValueError, match=r"mixture: x has shape \(2, 6\).*\(batch, 5\)"):
        tiny_mixture().loss(numpy.zeros((2, 6)), numpy.random.default_rng(0))


def test_mixture_vae_trains_on_a_bimodal_dataset():
    """On 512 binary vectors from two prototypes (complementary halves of 16 bits, 5% flipped), 300 Adam
    steps (float32, seed 0, 3 components) raise the ELBO by at least 40% of its starting value (mean of the
    first vs last 20 steps), and the two modes end up with different latent means."""
    rng = numpy.random.default_rng(0)
    first_half = numpy.arange(16) < 8
    prototypes = numpy.stack([first_half, ~first_half])
    labels = rng.integers(2, size=512)
    data = (prototypes[labels] ^ (rng.uniform(size=(512, 16)) < 0.05)).astype(numpy.float32)
    model = MixtureVAE(MixtureVAEConfig(x_dim=16, z_dim=2, hidden=(32,), components=3, seed=0))
    first, last, result = train(model, data, rng)
    assert last > first + 0.4 * abs(first), (first, last)
    with tv.no_grad():
        means = model.latent_mean(model.check_x(data))
    gap = numpy.linalg.norm(means[labels == 0].mean(axis=0) - means[labels == 1].mean(axis=0))
    assert gap > 1.0, gap


def test_posterior_sample_parts_name_the_component_that_drew_each_sample():
    """The mixture's draws come with their component: the samples of component c have c's mean and spread
    (so the posterior picture can colour them), and the parts' shares follow π."""
    import numpy

    from tinyvae import models

    model = models.build("mixture", x_dim=3, z_dim=2, hidden=(4,), components=3, dtype="float64")
    x = numpy.random.default_rng(0).normal(size=(1, 3))
    log_pi, mu, logvar = (t.numpy()[0] for t in model.encode(x))
    samples, parts = model.posterior_sample_parts(x, 30_000, numpy.random.default_rng(1))
    for c in range(3):
        drawn = samples[parts == c]
        numpy.testing.assert_allclose(
            drawn.mean(axis=0), mu[c], atol=5 * numpy.exp(0.5 * logvar[c]).max() / 50
        )
        numpy.testing.assert_allclose(len(drawn) / 30_000, numpy.exp(log_pi[c]), atol=0.015)
    assert (
        models.build("vae", x_dim=3, z_dim=2).posterior_sample_parts(x, 5, numpy.random.default_rng(0))[1]
        is None
    )
