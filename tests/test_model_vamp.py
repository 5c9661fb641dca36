"""The VampPrior (Tomczak & Welling 2018): its density is the mixture of the encoder's Gaussians at the
pseudo-inputs, its gradients (through the pseudo-inputs and the encoder) pass finite differences, its draws
follow it, and the model is one file plus a register call (it trains through tinyvae.train.run)."""

import math

import numpy
import pytest

import tinyvae as tv
from tinyvae import checkpoint, models, train
from tinyvae.models.vamp import VampPrior


def tiny(**extra):
    return models.build("vamp", x_dim=6, z_dim=2, hidden=(5,), pseudo_inputs=3, dtype="float64", **extra)


def test_the_prior_density_is_the_mixture_of_the_encoders_gaussians_at_the_pseudo_inputs():
    """log p(z) = log (1/K) Σ_k N(z; μ(u_k), σ²(u_k)), computed directly in float64 for (2, 4, Z) latents."""
    model = tiny()
    u = 1 / (1 + numpy.exp(-model.prior.pseudo_logits.numpy()))
    mu, logvar = (t.numpy() for t in model.encode(u))  # (K, Z)
    z = numpy.random.default_rng(0).normal(size=(2, 4, 2))
    diff = z[..., None, :] - mu  # (2, 4, K, Z)
    log_n = -0.5 * (diff**2 / numpy.exp(logvar) + logvar + math.log(2 * math.pi)).sum(axis=-1)  # (2, 4, K)
    expected = numpy.log(numpy.exp(log_n).mean(axis=-1))
    numpy.testing.assert_allclose(model.prior.log_prob(tv.Tensor(z)).numpy(), expected, rtol=1e-10)


def test_the_loss_passes_gradcheck_in_every_parameter_including_the_pseudo_inputs():
    """float64 central differences (tv.gradcheck's tolerance, rtol 1e-5): the Monte-Carlo KL reaches the
    pseudo-inputs through log p(z), and the encoder through both q and p."""
    model = tiny()
    x = (numpy.random.default_rng(0).uniform(size=(3, 6)) < 0.5).astype(numpy.float64)
    model.eval()
    assert "prior.pseudo_logits" in dict(model.named_parameters())
    assert tv.gradcheck(
        lambda *_: model.loss(x, numpy.random.default_rng(1)).loss, model.parameters(), name="vamp"
    )


def test_the_elbo_uses_the_sampled_kl_against_the_vampprior():
    """There is no closed form: KL = log q(z|x) − log p(z) at the reparameterised sample, per example."""
    model = tiny()
    x = numpy.random.default_rng(2).uniform(size=(4, 6))
    result = model.loss(x, numpy.random.default_rng(3))
    mu, logvar = (t.numpy() for t in model.encode(x))
    eps = numpy.random.default_rng(3).standard_normal(mu.shape)
    z = mu + numpy.exp(0.5 * logvar) * eps
    log_q = -0.5 * (eps**2 + logvar + math.log(2 * math.pi)).sum(axis=1)
    numpy.testing.assert_allclose(result.kl, log_q - model.prior.log_prob(tv.Tensor(z)).numpy(), rtol=1e-10)


def test_prior_draws_follow_the_mixture():
    """With the components set far apart, 30,000 draws split evenly (±1.5%) around their two means."""
    prior = VampPrior(
        lambda u: (u[:, :2] * 0 + tv.Tensor(numpy.array([[0.0, 0.0], [10.0, 0.0]])), u[:, :2] * 0),
        2,
        4,
        numpy.random.default_rng(0),
        "float64",
    )
    draws = prior.sample(30_000, numpy.random.default_rng(1))
    far = draws[:, 0] > 5
    assert abs(far.mean() - 0.5) < 0.015
    numpy.testing.assert_allclose(draws[far].mean(axis=0), [10.0, 0.0], atol=0.05)


def test_a_vamp_run_trains_evaluates_and_shows_its_pseudo_inputs(tmp_path):
    out = train.run(
        train.RunConfig(model="vamp", data="mnist5k", epochs=2, limit=300, out=tmp_path / "run",
                        model_options={"pseudo_inputs": 20}, progress=False),
        log=lambda line: None,
    )  # fmt: skip
    assert (out / "pseudo_inputs.png").is_file()
    model, _ = checkpoint.load_model(str(out / "last.npz"))
    assert model.prior.pseudo_logits.numpy().shape == (20, 784)
    assert numpy.isfinite(
        model.loss(model.sample(4, numpy.random.default_rng(0)), numpy.random.default_rng(0)).elbo
    ).all()


def test_free_bits_are_refused_with_the_vampprior():
    with pytest.raises(ValueError, match="free_bits must be 0 with the VampPrior"):
        tiny(free_bits=0.5)
