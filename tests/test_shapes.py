"""The ``shapes`` dataset: a deterministic dSprites-like grid with known factors (tinyvae/shapes.py)."""

import numpy
import pytest

from tinyvae import data, shapes


@pytest.fixture(scope="module")
def splits():
    return {split: data.load_dataset("shapes", split) for split in data.SPLITS}


def test_sizes_shapes_and_fields(splits):
    for split, dataset in splits.items():
        n = shapes.SIZES[split]
        assert dataset.x.shape == (n, 784) and dataset.x.dtype == numpy.float32
        assert dataset.labels.shape == (n,) and dataset.labels.dtype == numpy.int64
        assert dataset.factors.shape == (n, 5) and dataset.factors.dtype == numpy.int64
        assert dataset.factor_names == ("shape", "scale", "rotation", "x", "y")
        assert dataset.image_shape == (28, 28) and dataset.n_classes == 3
        numpy.testing.assert_array_equal(dataset.labels, dataset.factors[:, 0])  # the label is the shape
        assert dataset.x.min() == 0.0 and dataset.x.max() == 1.0
        assert len(numpy.unique(dataset.x)) > 2  # grey edges from supersampling, not a binary picture


def test_factor_ranges_are_covered(splits):
    factors = splits["train"].factors
    assert factors.min(axis=0).tolist() == [0] * 5
    assert (factors.max(axis=0) + 1).tolist() == list(shapes.FACTOR_SIZES)
    assert shapes.FACTOR_SIZES == (3, 6, 8, 14, 14)


def test_deterministic(splits):
    again = data.load_dataset("shapes", "train")
    numpy.testing.assert_array_equal(again.x, splits["train"].x)
    numpy.testing.assert_array_equal(again.factors, splits["train"].factors)
    first = data.load_dataset("shapes", "train", n=50)  # n keeps the first n rows, factors with them
    numpy.testing.assert_array_equal(first.x, splits["train"].x[:50])
    numpy.testing.assert_array_equal(first.factors, splits["train"].factors[:50])


def test_splits_are_disjoint(splits):
    index = {s: numpy.ravel_multi_index(d.factors.T, shapes.FACTOR_SIZES) for s, d in splits.items()}
    assert len(numpy.unique(index["train"])) == len(index["train"])  # no repeated image either
    assert not set(index["train"]) & set(index["test"])
    # Together they are the whole grid: every combination of the factors is in one split.
    assert len(index["train"]) + len(index["test"]) == numpy.prod(shapes.FACTOR_SIZES) == 28_224


def test_training_defaults_on_shapes_and_elsewhere():
    """`tinyvae train --data shapes` trains 300 epochs with 10 latents unless told otherwise; the other
    datasets keep theirs (30 epochs; 20 latents on images, 2 on the toys); a flag always wins."""
    from tinyvae.train import RunConfig

    def epochs_and_latents(**flags):
        config = RunConfig(**flags)
        settings = config.new_settings()
        z_dim = config.model_fields(settings, x_dim=784, n_classes=3)["z_dim"]
        return settings["epochs"], z_dim

    assert epochs_and_latents(data="shapes") == (300, 10)
    assert epochs_and_latents(data="shapes", model="beta-vae") == (300, 10)
    assert epochs_and_latents(data="shapes", epochs=5, latent_dim=3) == (5, 3)
    assert epochs_and_latents() == (30, 20)  # mnist5k
    assert epochs_and_latents(data="ring") == (30, 2)


def test_each_factor_changes_the_image():
    base = numpy.array([[1, 3, 2, 6, 6]])
    boxes = shapes.templates()  # rendered once for the 45 pictures below
    image = shapes.render(base, boxes)
    for k, name in enumerate(shapes.FACTOR_NAMES):
        for value in range(shapes.FACTOR_SIZES[k]):
            if value == base[0, k]:
                continue
            changed = base.copy()
            changed[0, k] = value
            difference = numpy.abs(shapes.render(changed, boxes) - image).sum()
            assert difference > 1.0, f"{name} = {value} drew the same picture as {name} = {base[0, k]}"


def test_factors_act_as_documented():
    """Position translates by whole pixels, scale grows the area, rotation keeps the area (nearly)."""
    picture = shapes.render(numpy.array([[0, 5, 0, 0, 0], [0, 5, 0, 3, 2]])).reshape(2, 28, 28)
    numpy.testing.assert_array_equal(picture[1][2:, 3:], picture[0][:-2, :-3])  # x → columns, y → rows
    areas = shapes.render(numpy.array([[2, k, 0, 6, 6] for k in range(6)])).sum(axis=1)
    assert (numpy.diff(areas) > 0).all()
    turned = shapes.render(numpy.array([[0, 5, r, 6, 6] for r in range(8)])).sum(axis=1)
    assert turned.max() / turned.min() < 1.1  # pixel edges: a turned square loses up to 6%


def test_pixel_modes_apply(splits):
    static = data.load_dataset("shapes", "test", pixels="binarized-static")
    assert set(numpy.unique(static.x)) <= {0.0, 1.0}
    dynamic = data.load_dataset("shapes", "train", pixels="binarized-dynamic", n=64)
    x, y = next(dynamic.batches(64, numpy.random.default_rng(0)))
    assert set(numpy.unique(x)) <= {0.0, 1.0} and y.shape == (64,)


def test_bad_factors_are_refused():
    with pytest.raises(ValueError, match="shape"):
        shapes.render(numpy.zeros((3, 4), dtype=int))
    with pytest.raises(ValueError, match="lie in"):
        shapes.render(numpy.array([[3, 0, 0, 0, 0]]))
