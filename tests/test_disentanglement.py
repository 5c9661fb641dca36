"""MIG and SAP on synthetic codes whose answers are known (tinyvae/disentanglement.py)."""

import numpy
import pytest

from tinyvae import data, disentanglement, models


def grid(*sizes, repeat=2):
    """Every combination of the factor values, ``repeat`` times: factors exactly independent."""
    rows = numpy.stack(numpy.unravel_index(numpy.arange(numpy.prod(sizes)), sizes), axis=1)
    return numpy.tile(rows, (repeat, 1)).astype(numpy.int64)  # (N, F)


def noisy(values, seed=0, scale=0.01):
    return values + scale * numpy.random.default_rng(seed).standard_normal(values.shape)


def rotated(factors):
    """Two codes that each mix both factors equally: (v₁ + v₂)/√2 and (v₁ − v₂)/√2."""
    a, b = factors[:, 0].astype(float), factors[:, 1].astype(float)
    return numpy.stack([a + b, a - b], axis=1) / numpy.sqrt(2)


def test_codes_equal_to_the_factors_score_one():
    factors = grid(6, 10, 8)
    codes = noisy(factors.astype(float))
    assert disentanglement.mig(codes, factors) > 0.97
    assert disentanglement.sap(codes, factors) > 0.97
    permuted = codes[:, [2, 0, 1]] * [3.0, -1.0, 0.5]  # which dimension, its sign and scale do not matter
    assert disentanglement.mig(permuted, factors) == pytest.approx(disentanglement.mig(codes, factors))


def test_a_rotation_that_mixes_two_factors_scores_zero():
    factors = grid(10, 10)
    codes = noisy(rotated(factors), scale=1e-3)
    mutual = disentanglement.mutual_information_matrix(codes, factors)
    assert mutual.min() > 0.3  # each code knows a lot about each factor ...
    assert disentanglement.mig(codes, factors) < 0.05  # ... but no factor has a code of its own
    assert disentanglement.sap(codes, factors) < 0.05


def test_an_irrelevant_extra_latent_changes_nothing():
    # Enough examples that the plug-in estimator's bias, about (bins − 1)(K − 1) / 2N nats for the noise
    # latent, stays small: here 19 · 9 / 7,680 = 0.02 nats against H = log 10 = 2.3 nats.
    factors = grid(6, 10, 8, repeat=8)
    codes = noisy(factors.astype(float))
    extra = numpy.concatenate([codes, numpy.random.default_rng(1).standard_normal((len(codes), 1))], axis=1)
    assert disentanglement.mig(extra, factors) == pytest.approx(disentanglement.mig(codes, factors), abs=0.02)
    assert disentanglement.sap(extra, factors) == pytest.approx(disentanglement.sap(codes, factors), abs=0.02)


def test_a_factor_copied_into_two_latents_scores_zero_for_that_factor():
    factors = grid(6, 10, repeat=20)
    codes = noisy(factors[:, [0, 0, 1]].astype(float))
    per_factor = disentanglement.mig_per_factor(codes, factors)
    assert per_factor[0] < 0.05 and per_factor[1] > 0.97


@pytest.mark.parametrize("seed", range(5))
def test_scores_lie_in_the_unit_interval(seed):
    rng = numpy.random.default_rng(seed)
    factors = rng.integers(0, [2, 5, 9], size=(300, 3))
    codes = rng.standard_normal((300, 4)) + factors[:, rng.integers(0, 3, 4)] * rng.random(4)
    for score in (disentanglement.mig(codes, factors), disentanglement.sap(codes, factors, categorical=(0,))):
        assert 0.0 <= score <= 1.0
    assert 0.0 <= disentanglement.mig(numpy.zeros((300, 2)), factors) <= 1e-12  # constant codes: nothing


def test_mutual_information_and_entropy_closed_forms():
    v = numpy.repeat(numpy.arange(4), 20)  # uniform over 4 values
    assert disentanglement.entropy(v) == pytest.approx(numpy.log(4))
    assert disentanglement.mutual_information(v, v) == pytest.approx(numpy.log(4))
    assert disentanglement.mutual_information(v, v // 2) == pytest.approx(numpy.log(2))
    assert disentanglement.mutual_information(v, numpy.tile([0, 1], 40)) == pytest.approx(0.0, abs=1e-12)


def test_categorical_sap_ignores_how_categories_are_numbered():
    factors = grid(3, 10)
    codes = noisy(numpy.array([0.0, 5.0, 1.0])[factors[:, 0]][:, None] * [1, 0] + factors[:, 1:] * [0, 1.0])
    renumbered = factors.copy()
    renumbered[:, 0] = numpy.array([2, 0, 1])[factors[:, 0]]
    first = disentanglement.sap(codes, factors, categorical=(0,))
    assert first > 0.95
    assert disentanglement.sap(codes, renumbered, categorical=(0,)) == pytest.approx(first)


def test_of_model_uses_the_posterior_means_and_needs_factors():
    test = data.load_dataset("shapes", "test", n=120)
    model = models.build("vae", x_dim=784, z_dim=4, hidden=(16,), seed=0)
    means = disentanglement.posterior_means(model, test, batch_size=50)
    assert means.shape == (120, 4)
    numpy.testing.assert_allclose(means, model.latent_mean(model.check_x(test.x)), rtol=1e-5, atol=1e-6)
    assert disentanglement.mig_of_model(model, test) == disentanglement.mig(means, test.factors)
    assert 0.0 <= disentanglement.sap_of_model(model, test) <= 1.0
    with pytest.raises(ValueError, match="no known generating factors"):
        disentanglement.mig_of_model(model, data.load_dataset("mnist5k", "test", n=10))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same N"):
        disentanglement.mig(numpy.zeros((5, 2)), numpy.zeros((4, 1), dtype=int))
    with pytest.raises(ValueError, match="integer"):
        disentanglement.mig(numpy.zeros((5, 2)), numpy.zeros((5, 1)))


def test_tinyvae_evaluate_writes_mig_and_sap_for_data_with_factors(tmp_path):
    """`tinyvae evaluate` on a shapes run adds mig and sap (in [0, 1]) to evaluation.json; on MNIST, which
    has no known factors, neither key appears."""
    import json

    from tinyvae import cli

    out = tmp_path / "shapes"
    train = ["train", "--data", "shapes", "--epochs", "1", "--limit", "256", "--no-plots", "--no-progress"]
    assert cli.main([*train, "--out", str(out)]) == 0
    assert cli.main(["evaluate", str(out), "--k", "2", "--limit", "300"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert 0 <= report["mig"] <= 1 and 0 <= report["sap"] <= 1
    mnist = tmp_path / "mnist"
    assert cli.main(["train", "--epochs", "1", "--limit", "128", "--no-plots", "--out", str(mnist)]) == 0
    assert cli.main(["evaluate", str(mnist), "--k", "2", "--limit", "50"]) == 0
    assert "mig" not in json.loads((mnist / "evaluation.json").read_text())
