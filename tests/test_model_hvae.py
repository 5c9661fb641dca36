"""The Markovian hierarchical VAE: gradients, the per-layer KLs adding up to the bound, the importance
weights, the top-down prior sampler, T = 3, bad configs, and that it trains."""

import numpy
import pytest
from training import prototype_dataset, train

import tinyvae as tv
from tinyvae.models.hvae import HVAE, HVAEConfig


def tiny_hvae(**overrides):
    """A float64 HVAE small enough for finite differences over every parameter."""
    settings = dict(x_dim=5, z_dims=(3, 2), hidden=(4,), activation="tanh", dtype="float64", seed=0)
    settings.update(overrides)
    return HVAE(HVAEConfig(**settings))


def binary_batch(n=3, x_dim=5, seed=1):
    return (numpy.random.default_rng(seed).uniform(size=(n, x_dim)) < 0.5).astype(numpy.float64)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"likelihood": "gaussian", "gaussian_logvar": None},
        {"analytic_kl": False},
        {"z_dims": (3, 2, 2)},
    ],
    ids=["bernoulli", "gaussian-learned-variance", "monte-carlo-top-kl", "three-layers"],
)
def test_hvae_loss_passes_gradcheck_in_every_parameter(overrides):
    """With the noise fixed, the negative ELBO is smooth in every weight of the inference chain, the prior
    chain, the decoder and the likelihood, and its backward pass matches finite differences."""
    model = tiny_hvae(**overrides)
    x = (
        binary_batch()
        if model.config.likelihood == "bernoulli"
        else numpy.random.default_rng(1).normal(size=(3, 5))
    )
    params = model.parameters()
    n_expected = 2 * (2 * len(model.config.z_dims) - 1) * 2 + 2 * 2 + (model.config.gaussian_logvar is None)
    assert len(params) == n_expected  # every network's weights and biases are in the check

    def loss(*_params):
        return model.loss(x, numpy.random.default_rng(2)).loss

    assert tv.gradcheck(loss, params, name="HVAE.loss")


@pytest.mark.parametrize("z_dims", [(3, 2), (3, 2, 2), (4, 3, 2, 2)])
@pytest.mark.parametrize("analytic_kl", [True, False])
def test_per_layer_kls_and_reconstruction_sum_to_the_elbo(z_dims, analytic_kl):
    """ELBO = recon − Σ_t kl_t per example, one kl_t per layer (named kl_1 … kl_T), and the loss is the
    negated batch mean; the top layer's closed-form KL against N(0, I) is non-negative."""
    model = tiny_hvae(z_dims=z_dims, analytic_kl=analytic_kl)
    result = model.loss(binary_batch(), numpy.random.default_rng(0))
    names = [f"kl_{t}" for t in range(1, len(z_dims) + 1)]
    assert list(result.terms) == ["recon", *names]
    total_kl = sum(result.terms[name] for name in names)
    numpy.testing.assert_allclose(result.elbo, result.recon - total_kl, rtol=1e-12)
    assert result.loss.item() == pytest.approx(-result.elbo.mean())
    assert all(result.terms[name].shape == (3,) for name in names)
    if analytic_kl:
        assert (result.terms[names[-1]] >= 0).all()


@pytest.mark.parametrize("z_dims", [(3, 2), (3, 2, 2)])
def test_log_weights_with_one_sample_equal_the_elbo_on_the_same_noise(z_dims):
    """log p(x, z_{1:T}) − log q(z_{1:T}|x) at one sample of the chain is the loss's ELBO when every layer's
    KL is the single-sample one (analytic_kl=False), drawn from the same generator state."""
    model = tiny_hvae(z_dims=z_dims, analytic_kl=False)
    x = binary_batch()
    weights = model.log_weights(x, 1, numpy.random.default_rng(5))
    result = model.loss(x, numpy.random.default_rng(5))
    assert weights.shape == (1, 3)
    numpy.testing.assert_allclose(weights.data[0], result.elbo, rtol=1e-12)


def test_closed_form_top_kl_gives_the_same_expected_elbo_as_the_sampled_one():
    """Both estimators of the ELBO are unbiased: over 20,000 draws each, the mean ELBO with the top layer's
    KL in closed form and the mean single-sample log weight differ by less than 4 standard errors; and the
    closed form has the smaller spread (it integrates z_T out)."""
    model = tiny_hvae(z_dims=(3, 2, 2))
    x = numpy.repeat(binary_batch(n=1), 20_000, axis=0)
    closed = model.loss(x, numpy.random.default_rng(6)).elbo
    sampled = model.log_weights(x, 1, numpy.random.default_rng(7)).data[0]
    standard_error = numpy.sqrt(closed.var(ddof=1) / len(closed) + sampled.var(ddof=1) / len(sampled))
    assert abs(closed.mean() - sampled.mean()) < 4 * standard_error
    assert closed.std() < sampled.std()


def test_importance_weighted_bound_tightens_with_k():
    """log-mean-exp of the k log weights (Burda et al. 2016) is, averaged over 200 draws, larger at k = 50
    than at k = 1, and both are finite."""
    model = tiny_hvae()
    x = numpy.repeat(binary_batch(n=1), 200, axis=0)
    bounds = {}
    for k in (1, 50):
        weights = model.log_weights(x, k, numpy.random.default_rng(k)).data  # (k, 200)
        top = weights.max(axis=0)
        bounds[k] = (top + numpy.log(numpy.exp(weights - top).mean(axis=0))).mean()
    assert numpy.isfinite(list(bounds.values())).all() and bounds[50] > bounds[1], bounds


def test_sample_latents_walks_the_prior_chain_top_down():
    """sample_latents draws z_T ~ N(0, I) and then z_{t−1} = μ_p(z_t) + σ_p(z_t) ε from each prior network,
    top-down, returning z_1; ``sample`` decodes exactly that."""
    model = tiny_hvae(z_dims=(3, 2, 2))
    rng = numpy.random.default_rng(4)
    z = rng.standard_normal((6, 2))  # z_3
    for prior in (model.priors[1], model.priors[0]):  # p(z_2|z_3), then p(z_1|z_2)
        mu, logvar = prior(tv.Tensor(z))
        z = mu.data + numpy.exp(0.5 * logvar.data) * rng.standard_normal(mu.shape)
    latents = model.sample_latents(6, numpy.random.default_rng(4))
    numpy.testing.assert_allclose(latents, z, rtol=1e-12)
    numpy.testing.assert_allclose(
        model.sample(6, numpy.random.default_rng(4)), model.decode(latents), rtol=1e-12
    )


def test_interface_works_in_the_bottom_latent():
    """encode and latent_mean give q(z_1|x); reconstruct, sample and interpolate return (n, x_dim) decoder
    means, interpolation ending at the reconstructions."""
    model = tiny_hvae(z_dims=(3, 2, 2))
    x = binary_batch(n=2)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 3)
    numpy.testing.assert_allclose(model.reconstruct(x), model.decode(mu.data), rtol=1e-12)
    samples = model.sample(5, numpy.random.default_rng(0))
    assert samples.shape == (5, 5) and ((samples > 0) & (samples < 1)).all()
    for method in ("linear", "slerp"):
        path = model.interpolate(x[0], x[1], steps=4, method=method)
        assert path.shape == (4, 5)
        numpy.testing.assert_allclose(path[[0, -1]], model.reconstruct(x), rtol=1e-10)


def test_decoding_a_latent_of_the_wrong_layer_is_refused():
    """decode reads z_1; a latent of another size (say z_T) gets an error naming the expected size."""
    with pytest.raises(
        ValueError, match=r"z has shape \(2, 2\) but the decoder reads z_1, of size z_dims\[0\] = 3"
    ):
        tiny_hvae().decode(numpy.zeros((2, 2)))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"z_dims": (20,)}, r"z_dims must be a tuple of at least 2 positive integers.*got \(20,\)"),
        ({"z_dims": ()}, r"z_dims must be a tuple of at least 2.*got \(\)"),
        ({"z_dims": (20, 0)}, r"z_dims must be a tuple of at least 2 positive integers.*got \(20, 0\)"),
        ({"z_dims": (20, 2.5)}, r"got \(20, 2.5\)"),
        ({"z_dims": (True, 3)}, r"got \(True, 3\)"),
        ({"z_dims": 20}, r"got 20"),
        ({"z_dims": (8, 4), "z_dim": 5}, r"must equal z_dims\[0\] = 8; got z_dim=5"),
        ({"hidden": (0,)}, r"hidden sizes must be positive"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    """Fewer than two layers, non-positive or non-integer sizes, and a z_dim that is not z_1's size fail
    when the config is built, naming the field and the value."""
    with pytest.raises(ValueError, match=message):
        HVAEConfig(**{"x_dim": 5, **overrides})


def test_config_sets_z_dim_and_round_trips_through_a_dict():
    """z_dim is filled in as z_dims[0]; lists become tuples; the config rebuilds from its saved dict."""
    config = HVAEConfig(x_dim=5, z_dims=[6, 4, 2])
    assert config.z_dims == (6, 4, 2) and config.z_dim == 6
    assert HVAEConfig.from_dict(config.to_dict()) == config


def test_hvae_trains_on_a_small_synthetic_dataset():
    """On 512 binary vectors made from 4 prototypes with 5% of bits flipped, 300 Adam steps (float32,
    seed 0) of a two-layer HVAE raise the ELBO by at least 40% of its starting value (seen: −10.76 to
    −5.29)."""
    rng = numpy.random.default_rng(0)
    data, _, _ = prototype_dataset(rng)
    model = HVAE(HVAEConfig(x_dim=16, z_dims=(4, 2), hidden=(32,), seed=0))
    first, last, result = train(model, data, rng)
    assert last > first + 0.4 * abs(first), (first, last)
