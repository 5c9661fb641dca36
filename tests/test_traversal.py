"""Latent traversals (plots.traversal_images / plots.latent_traversal): each row sweeps one latent
dimension of one example's posterior mean over the prior's quantiles, judged by the decoded arrays."""

import numpy
import pytest

from tinyvae import models, plots

IMAGE_SHAPE = (4, 4)


def tiny(name="vae", z_dim=3, **extra):
    extra.setdefault("hidden", (8,))
    return models.build(name, x_dim=16, z_dim=z_dim, seed=1, **extra)


@pytest.fixture
def x():
    return numpy.random.default_rng(0).random((40, 16)).astype(numpy.float32)


def test_each_row_decodes_one_swept_dimension(x):
    model = tiny()
    images, dims, values, activity = plots.traversal_images(model, x, steps=5)
    assert images.shape == (3, 5, 16) and sorted(dims) == [0, 1, 2] and values.shape == (5, 3)
    numpy.testing.assert_allclose(values[:, 0], plots.normal_ppf(numpy.linspace(0.05, 0.95, 5)))
    start = model.latent_mean(model.check_x(x[:1]))[0]  # (Z,) the first example's posterior mean
    for row, j in enumerate(dims):
        z = numpy.repeat(start[None], 5, axis=0)
        z[:, j] = values[:, j]  # only coordinate j moves
        numpy.testing.assert_allclose(images[row], model.decode(z), atol=1e-6)
    assert list(activity[dims]) == sorted(activity, reverse=True)  # most active first


def test_a_dimension_neither_network_uses_is_a_constant_last_row(x):
    """Cut latent 1 out of both networks: the encoder gives it the same mean for every example (no
    activity) and the decoder ignores it, so its row is last and shows one picture; the others change."""
    model = tiny()
    model.decoder.layers[0].weight.data[1] = 0.0  # z_2 → hidden weights
    last = model.encoder.net.layers[-1]
    last.weight.data[:, 1] = 0.0  # the encoder's μ_2 output
    last.bias.data[1] = 0.7
    images, dims, _, activity = plots.traversal_images(model, x, steps=6)
    assert dims[-1] == 1 and activity[1] == 0.0
    spread = numpy.abs(images - images[:, :1]).max(axis=(1, 2))  # (Z,) how much each row changes
    assert spread[-1] < 1e-6 and (spread[:-1] > 1e-3).all()  # float32 sums in another order: 6e-8


def test_the_figure_tiles_exactly_the_traversal(x, drawn, tmp_path):
    model = tiny()
    path = plots.latent_traversal(model, x, tmp_path / "t.png", steps=4, image_shape=IMAGE_SHAPE)
    assert path.stat().st_size > 0
    images = plots.traversal_images(model, x, steps=4)[0]
    numpy.testing.assert_allclose(drawn[0], images.reshape(12, 16), atol=1e-6)


def test_a_conditional_model_traverses_under_one_label(x):
    model = tiny("cvae", n_classes=3)
    images = plots.traversal_images(model, x, steps=3, y=2)[0]
    start = model.latent_mean(model.check_x(x[:1]), numpy.array([2]))[0]
    dims = plots.traversal_images(model, x, steps=3, y=2)[1]
    z = numpy.repeat(start[None], 3, axis=0)
    z[:, dims[0]] = plots.normal_ppf(numpy.linspace(0.05, 0.95, 3))
    numpy.testing.assert_allclose(images[0], model.decode(z, numpy.full(3, 2)), atol=1e-6)


def test_only_gaussian_latents_and_images(x, tmp_path):
    with pytest.raises(TypeError, match="discrete latent"):
        plots.traversal_images(tiny("vqvae", codebook_size=4), x)
    with pytest.raises(TypeError, match="deterministic latent"):
        plots.traversal_images(tiny("ae"), x)
    with pytest.raises(ValueError, match="steps"):
        plots.traversal_images(tiny(), x, steps=1)
