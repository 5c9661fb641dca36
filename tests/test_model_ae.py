"""The plain autoencoder baseline and β-VAE: their losses, gradients and the registry that builds them."""

import numpy
import pytest

import tinyvae as tv
from tinyvae import models
from tinyvae.models import AE, VAE, AEConfig, BetaVAE, BetaVAEConfig, VAEConfig


def binary_batch(n=3, x_dim=5, seed=1):
    return (numpy.random.default_rng(seed).uniform(size=(n, x_dim)) < 0.5).astype(numpy.float64)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_ae_loss_passes_gradcheck(likelihood):
    """The AE's reconstruction loss is deterministic and smooth in every weight (tanh units), and its
    backward matches finite differences."""
    model = AE(
        AEConfig(x_dim=5, z_dim=2, hidden=(4,), activation="tanh", dtype="float64", likelihood=likelihood)
    )
    x = binary_batch()
    assert tv.gradcheck(lambda *_: model.loss(x).loss, model.parameters(), name="AE.loss")


def test_gaussian_ae_loss_is_half_the_squared_error_plus_a_constant():
    """With a unit-variance Gaussian decoder, −log p(x|x̂) = ½‖x − x̂‖² + (D/2) log 2π: the AE minimises MSE."""
    model = AE(AEConfig(x_dim=5, z_dim=2, hidden=(4,), dtype="float64", likelihood="gaussian"))
    x = binary_batch()
    result = model.loss(x)
    x_hat = model.reconstruct(x)
    expected = 0.5 * ((x - x_hat) ** 2).sum(axis=1) + 2.5 * numpy.log(2 * numpy.pi)
    numpy.testing.assert_allclose(-result.recon, expected, rtol=1e-12)
    assert result.elbo is None and "elbo" not in result.summary()


def test_ae_reconstructs_better_than_it_generates():
    """After training on 4 binary prototypes, the AE's reconstructions are close to the data while decodings
    of z ~ N(0, I) are much farther from every prototype: an AE is not a generative model."""
    rng = numpy.random.default_rng(0)
    prototypes = (rng.uniform(size=(4, 16)) < 0.5).astype(numpy.float32)
    data = prototypes[rng.integers(4, size=256)]
    model = AE(AEConfig(x_dim=16, z_dim=8, hidden=(32,), seed=0))
    optimizer = tv.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        model.loss(data[rng.integers(256, size=64)]).loss.backward()
        optimizer.step()
    recon_error = numpy.abs(model.reconstruct(data) - data).mean()
    samples = model.sample(256, numpy.random.default_rng(1))
    sample_error = numpy.abs(samples[:, None, :] - prototypes[None]).mean(axis=2).min(axis=1).mean()
    assert recon_error < 0.05
    assert sample_error > 2 * recon_error


def test_beta_vae_is_a_vae_with_beta_four_by_default():
    """β-VAE uses the VAE's loss with β = 4 (Higgins et al. 2017): same weights and noise give the VAE's
    loss with the KL counted four times, and the same ELBO."""
    settings = dict(x_dim=5, z_dim=2, hidden=(4,), dtype="float64", seed=3)
    beta_vae, vae = BetaVAE(BetaVAEConfig(**settings)), VAE(VAEConfig(**settings))
    assert beta_vae.config.beta == 4.0
    x = binary_batch()
    b = beta_vae.loss(x, numpy.random.default_rng(0))
    v = vae.loss(x, numpy.random.default_rng(0))
    numpy.testing.assert_allclose(b.elbo, v.elbo)
    assert b.loss.item() == pytest.approx(4 * v.kl.mean() - v.recon.mean())


def test_registry_builds_each_model_by_name():
    """models.build(name, ...) returns the class registered under that name; an unknown name lists them."""
    for name, cls in models.MODELS.items():
        fields = {"x_dim": 6, "z_dim": 2, "hidden": (4,)}
        if name == "cvae":
            fields["n_classes"] = 3
        if name == "hvae":  # one size per stochastic layer; z_dim follows the bottom one
            fields.update(z_dims=(2, 1), z_dim=2)
        if name == "linear":  # linear maps and a Gaussian decoder, by definition
            fields.update(hidden=(), likelihood="gaussian")
        if name == "diffusion":  # every latent x_t has the data's size
            fields.update(z_dim=None, steps=10)
        model = models.build(name, **fields)
        assert isinstance(model, cls) and model.name == name
    with pytest.raises(ValueError, match=r"unknown model 'vea'; choose one of \["):
        models.build("vea", x_dim=3)


def test_config_round_trips_through_a_dict():
    """A config saved as a plain dict (as in a checkpoint) rebuilds the same config; unknown fields are
    refused by name."""
    config = BetaVAEConfig(x_dim=7, z_dim=3, hidden=(5, 4), beta=2.0)
    assert BetaVAEConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        BetaVAEConfig.from_dict({**config.to_dict(), "colour": "red"})
