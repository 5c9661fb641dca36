"""The normalizing-flow VAE: gradients, zero flow steps is the Gaussian VAE, the bound's pieces, the
interface, bad settings, and that it trains."""

import numpy
import pytest
from training import prototype_dataset, train

import tinyvae as tv
from tinyvae.models import VAE, VAEConfig
from tinyvae.models.flow import FlowVAE, FlowVAEConfig

SETTINGS = dict(x_dim=5, z_dim=2, hidden=(4,), activation="tanh", dtype="float64", seed=0)


def tiny_flow_vae(**overrides):
    """A float64 flow VAE small enough for finite differences over every parameter."""
    return FlowVAE(FlowVAEConfig(**{**SETTINGS, "flow_steps": 2, **overrides}))


def binary_batch(n=3, x_dim=5, seed=1):
    return (numpy.random.default_rng(seed).uniform(size=(n, x_dim)) < 0.5).astype(numpy.float64)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"flow": "radial"},
        {"likelihood": "gaussian", "gaussian_logvar": None, "beta": 2.0},
    ],
    ids=["planar", "radial", "planar-gaussian-beta"],
)
def test_flow_vae_loss_passes_gradcheck_in_every_parameter(overrides):
    """With the noise fixed, the negative bound of eq. 15 is smooth in every encoder, decoder and flow
    parameter, and its backward pass matches finite differences (float64). Radial layers get a nonzero β
    first, since their initial β = 0 makes them the identity."""
    model = tiny_flow_vae(**overrides)
    for layer in model.flows.layers:
        if hasattr(layer, "beta_raw"):
            layer.beta_raw.data[...] = 0.7
    gaussian = model.config.likelihood == "gaussian"
    x = numpy.random.default_rng(1).normal(size=(3, 5)) if gaussian else binary_batch()
    model.eval()

    def loss(*_params):
        return model.loss(x, numpy.random.default_rng(2)).loss

    assert tv.gradcheck(loss, model.parameters(), name="FlowVAE.loss")


@pytest.mark.parametrize("flow", ["planar", "radial"])
def test_zero_flow_steps_is_the_gaussian_vae_with_a_sampled_kl(flow):
    """With flow_steps = 0, z_K = z_0 and the log-determinant sum is 0, so the bound is the VAE's
    single-sample ELBO with analytic_kl=False. The encoder and decoder are built from the same seed in the
    same order, so the weights are identical; on the same noise the ELBO and loss agree to rounding."""
    x = binary_batch(n=6)
    flow_model = FlowVAE(FlowVAEConfig(flow_steps=0, flow=flow, **SETTINGS))
    vae = VAE(VAEConfig(analytic_kl=False, **SETTINGS))
    for (name_a, a), (name_b, b) in zip(flow_model.named_parameters(), vae.named_parameters(), strict=True):
        assert name_a == name_b
        numpy.testing.assert_array_equal(a.data, b.data)
    ours = flow_model.loss(x, numpy.random.default_rng(7))
    theirs = vae.loss(x, numpy.random.default_rng(7))
    numpy.testing.assert_allclose(ours.elbo, theirs.elbo, rtol=1e-12)
    numpy.testing.assert_allclose(ours.kl, theirs.kl, rtol=1e-12)
    assert ours.loss.item() == pytest.approx(theirs.loss.item(), rel=1e-12)
    numpy.testing.assert_array_equal(ours.log_det, 0.0)


def test_bound_is_eq_15_term_by_term():
    """ELBO = log p(x|z_K) + log p(z_K) − log q_0(z_0|x) + Σ_k log|det J_k| (eq. 15), rebuilt here from the
    encoder, the flow layers and NumPy log-densities on the same noise."""
    model = tiny_flow_vae(flow_steps=3)
    x = binary_batch()
    result = model.loss(x, numpy.random.default_rng(4))
    eps = numpy.random.default_rng(4).standard_normal((3, 2))
    mu, logvar = (t.data for t in model.encode(x))
    z0 = mu + numpy.exp(0.5 * logvar) * eps
    log_q0 = (-0.5 * (numpy.log(2 * numpy.pi) + logvar + eps**2)).sum(axis=-1)
    z, log_det = tv.Tensor(z0), numpy.zeros(3)
    for layer in model.flows.layers:
        z, step = layer(z)
        log_det += step.data
    logits = model.decoder(z).data
    recon = (x * logits - numpy.logaddexp(0, logits)).sum(axis=-1)
    log_prior = (-0.5 * (numpy.log(2 * numpy.pi) + z.data**2)).sum(axis=-1)
    numpy.testing.assert_allclose(result.log_det, log_det, rtol=1e-12)
    numpy.testing.assert_allclose(result.recon, recon, rtol=1e-12)
    numpy.testing.assert_allclose(result.elbo, recon + log_prior - log_q0 + log_det, rtol=1e-12)
    numpy.testing.assert_allclose(result.elbo, result.recon - result.kl, rtol=1e-12)
    assert result.loss.item() == pytest.approx(-result.elbo.mean(), rel=1e-12)


def test_log_weights_with_one_sample_equal_the_elbo():
    """log p(x, z_K) − log q_K(z_K|x) at one sample is the bound's estimate on the same noise; k samples
    give shape (k, B)."""
    model = tiny_flow_vae(flow="radial")
    x = binary_batch()
    weights = model.log_weights(x, 1, numpy.random.default_rng(5))
    result = model.loss(x, numpy.random.default_rng(5))
    numpy.testing.assert_allclose(weights.data[0], result.elbo, rtol=1e-12)
    assert model.log_weights(x, 7, numpy.random.default_rng(5)).shape == (7, 3)


def test_interface_shapes_and_ranges():
    """reconstruct, sample and interpolate return decoder means of the right shapes; interpolation starts
    and ends at the decoded latent point estimates (base means pushed through the flow)."""
    model = tiny_flow_vae()
    x = binary_batch(n=4)
    assert model.reconstruct(x).shape == (4, 5)
    samples = model.sample(6, numpy.random.default_rng(0))
    assert samples.shape == (6, 5) and ((samples > 0) & (samples < 1)).all()
    path = model.interpolate(x[0], x[1], steps=5)
    numpy.testing.assert_allclose(path[[0, -1]], model.reconstruct(x[:2]), rtol=1e-10)
    assert model.name == "flow" and len(model.flows) == 2


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"flow_steps": -1}, "flow_steps must be an integer from 0 to 1,000, got -1"),
        ({"flow_steps": 1.5}, "flow_steps must be an integer from 0 to 1,000, got 1.5"),
        ({"flow_steps": 10**8}, "flow_steps must be an integer from 0 to 1,000, got 100000000"),
        ({"flow": "iaf"}, "flow must be one of.*got 'iaf'"),
        ({"free_bits": 0.5}, "free_bits must be 0 for the flow posterior, got 0.5"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    """Invalid settings fail when the config is built, naming the field and the value."""
    with pytest.raises(ValueError, match=message):
        FlowVAEConfig(**{"x_dim": 5, **overrides})


def test_bad_input_is_named():
    """x of the wrong width is refused with its shape and the expected one."""
    with pytest.raises(ValueError, match=r"flow: x has shape \(2, 6\).*\(batch, 5\)"):
        tiny_flow_vae().loss(numpy.zeros((2, 6)), numpy.random.default_rng(0))


@pytest.mark.parametrize("flow", ["planar", "radial"])
def test_flow_vae_trains_on_a_small_synthetic_dataset(flow):
    """On 512 binary vectors made from 4 prototypes with flipped bits, 300 Adam steps (float32, seed 0,
    4 flow layers) raise the ELBO by at least 30% of its starting value (mean of the first vs last 20
    steps), and the flow ends up contributing a nonzero log-determinant."""
    rng = numpy.random.default_rng(0)
    data, _, _ = prototype_dataset(rng)
    model = FlowVAE(FlowVAEConfig(x_dim=16, z_dim=2, hidden=(32,), seed=0, flow=flow, flow_steps=4))
    first, last, result = train(model, data, rng)
    assert last > first + 0.3 * abs(first), (first, last)
    assert abs(result.log_det.mean()) > 1e-3
