"""Every registered model answers the one interface the training, evaluation and plotting code relies on."""

import numpy
import pytest
from training import tiny_model

from tinyvae import evaluate, models

X_DIM, BATCH = 6, 5


def small(name, **overrides):
    """A tiny instance of model ``name`` for this file's X_DIM (tests/training.py)."""
    return tiny_model(name, X_DIM, **overrides)


def batch(seed=0):
    x = (numpy.random.default_rng(seed).uniform(size=(BATCH, X_DIM)) < 0.5).astype(numpy.float32)
    return x, numpy.arange(BATCH) % 3


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_loss_result_has_a_scalar_loss_and_per_example_terms(name):
    """loss(x, rng, y) returns a finite scalar Tensor, an ELBO per example (None only for the AE, which has
    no density) and at least one named term, each with one finite value per example."""
    model, (x, y) = small(name), batch()
    result = model.loss(x, numpy.random.default_rng(0), y=y if model.conditional else None)
    assert result.loss.shape == () and numpy.isfinite(result.loss.item())
    assert (result.elbo is None) == (name == "ae")
    if result.elbo is not None:
        assert result.elbo.shape == (BATCH,) and numpy.isfinite(result.elbo).all()
    assert result.terms
    for name_, value in result.terms.items():
        assert value.shape == (BATCH,) and numpy.isfinite(value).all(), name_
    assert set(result.summary()) == {"loss", *(["elbo"] if result.elbo is not None else []), *result.terms}


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_generation_calls_return_decoder_means_of_the_right_shape(name):
    """sample, reconstruct, decode and interpolate return arrays (n, x_dim); for a Bernoulli decoder they
    are probabilities in [0, 1]."""
    model, (x, y) = small(name), batch()
    label = 1 if model.conditional else None
    labels = y if model.conditional else None
    outputs = [
        model.sample(3, numpy.random.default_rng(0), y=label),
        model.reconstruct(x, y=labels),
        model.interpolate(x[0], x[1], steps=4, y=label),
    ]
    assert [o.shape for o in outputs] == [(3, X_DIM), (BATCH, X_DIM), (4, X_DIM)]
    if model.config.likelihood == "bernoulli":
        assert all(((o >= 0) & (o <= 1)).all() for o in outputs)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_a_model_rebuilt_from_its_saved_config_and_weights_computes_the_same(name):
    """config.to_dict() and state_dict() are everything a checkpoint needs: a model rebuilt from them
    (with another seed, so the weights really come from the state) reconstructs identically."""
    model, (x, y) = small(name), batch()
    labels = y if model.conditional else None
    config = type(model.config).from_dict({**model.config.to_dict(), "seed": 7})
    rebuilt = type(model)(config)
    rebuilt.load_state_dict(model.state_dict())
    numpy.testing.assert_array_equal(rebuilt.reconstruct(x, y=labels), model.reconstruct(x, y=labels))


@pytest.mark.parametrize("name", sorted(n for n, cls in models.MODELS.items() if hasattr(cls, "log_weights")))
def test_models_with_a_density_have_an_importance_sampled_log_likelihood(name):
    """Every model with log_weights gets a finite log p(x) estimate from evaluate.log_likelihood, above
    its own single-sample ELBO on average (more samples tighten the bound)."""
    model, (x, y) = small(name), batch()
    labels = y if model.conditional else None
    log_px = evaluate.log_likelihood(model, x, k=200, rng=numpy.random.default_rng(0), y=labels)
    elbo = numpy.mean([model.loss(x, numpy.random.default_rng(s), y=labels).elbo for s in range(50)], axis=0)
    assert log_px.shape == (BATCH,) and numpy.isfinite(log_px).all()
    assert log_px.mean() > elbo.mean()
