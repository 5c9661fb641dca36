"""``arch="conv"``: the convolutional encoder and decoder of tinyvae/models/networks.py behind the models that
take them (vae, beta-vae, iwae, cvae, vamp, flow; the VQ-VAE with a spatial code grid), checked for shapes,
the layer stack the issue specifies, gradients (float64 finite differences through a whole small model),
config errors, checkpoints and the command line."""

import json

import numpy
import pytest

import tinyvae as tv
from tinyvae import checkpoint, cli, models, nn
from tinyvae.models import networks

CONV_MODELS = ("vae", "beta-vae", "iwae", "cvae", "vamp", "flow")


def build(name, x_dim=784, **fields):
    extra = {"cvae": {"n_classes": 3}, "vamp": {"pseudo_inputs": 4}}.get(name, {})
    return models.build(name, x_dim=x_dim, z_dim=4, arch="conv", **extra, **fields)


def images(n, side=28, seed=0):
    return (numpy.random.default_rng(seed).uniform(size=(n, side * side)) < 0.3).astype(numpy.float32)


@pytest.mark.parametrize("name", CONV_MODELS)
def test_conv_models_train_on_images_and_keep_the_flat_interface(name):
    """loss, reconstruct, sample and (where there is one) the importance-weighted bound work on (B, 784)
    with the conv networks inside; one Adam step lowers nothing to NaN."""
    model = build(name)
    x = images(5)
    y = numpy.arange(5) % 3 if model.conditional else None
    result = model.loss(x, numpy.random.default_rng(0), y=y)
    assert numpy.isfinite(result.loss.item()) and result.elbo.shape == (5,)
    result.loss.backward()
    tv.optim.Adam(model.parameters()).step()
    assert model.reconstruct(x, y).shape == (5, 784)
    assert model.sample(3, numpy.random.default_rng(1), y=None if y is None else 1).shape == (3, 784)
    if model.has_likelihood_bound:
        assert model.log_weights(x, 4, numpy.random.default_rng(2), y=y).shape == (4, 5)


def test_the_conv_vae_has_the_issues_layer_stack():
    """Encoder Conv(1→32, 4, s2, p1) → Conv(32→64, 4, s2, p1) → Linear(3136 → 2z); decoder Linear(z → 3136)
    → ConvT(64→32, 4, s2, p1) → ConvT(32→1, 4, s2, p1), read off the weight shapes."""
    model = build("vae")
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert shapes["encoder.net.conv1.weight"] == (32, 1, 4, 4)
    assert shapes["encoder.net.conv2.weight"] == (64, 32, 4, 4)
    assert shapes["encoder.net.linear.weight"] == (3136, 8)
    assert shapes["decoder.linear.weight"] == (4, 3136)
    assert shapes["decoder.deconv1.weight"] == (64, 32, 4, 4)
    assert shapes["decoder.deconv2.weight"] == (32, 1, 4, 4)


def test_the_conditional_conv_encoder_reads_the_label_after_the_convolutions():
    """The CVAE's one-hot label joins the 3136 flattened features before the Linear layer."""
    model = build("cvae")
    assert model.encoder.net.linear.weight.shape == (3136 + 3, 8)
    assert model.decoder.linear.weight.shape == (4 + 3, 3136)


def test_the_vq_vae_codes_are_the_7x7_grid_positions():
    """With arch conv the VQ-VAE's latent vectors are the 49 positions of the encoder's 7×7 grid, each a
    code of size D; the decoder reads the grid back."""
    model = models.build("vqvae", x_dim=784, z_dim=8, arch="conv", codebook_size=16)
    assert model.config.latent_vectors == 49
    x = images(4)
    z_e = model.encode_continuous(model.check_x(x))
    assert z_e.shape == (4, 49, 8)
    result = model.loss(x, numpy.random.default_rng(0))
    assert numpy.isfinite(result.loss.item())
    assert model.sample(2, numpy.random.default_rng(1)).shape == (2, 784)
    with pytest.raises(ValueError, match="latent_vectors must be 49"):
        models.VQVAEConfig(x_dim=784, arch="conv", latent_vectors=4)
    assert models.VQVAEConfig(x_dim=784).latent_vectors == 1  # the MLP's default is unchanged


def test_a_position_of_the_code_grid_only_sees_its_neighbourhood():
    """Changing the image's top-left corner changes the top-left code vectors and leaves the far corner's
    exactly as they were: the grid is spatial (two 4×4 stride-2 convolutions see 10 × 10 pixels)."""
    model = models.build("vqvae", x_dim=784, z_dim=8, arch="conv", codebook_size=16)
    x = images(1)
    changed = x.copy().reshape(28, 28)
    changed[:4, :4] = 1.0 - changed[:4, :4]
    a = model.encode_continuous(model.check_x(x)).numpy()[0].reshape(7, 7, 8)
    b = model.encode_continuous(model.check_x(changed.reshape(1, -1))).numpy()[0].reshape(7, 7, 8)
    assert not numpy.allclose(a[0, 0], b[0, 0])
    numpy.testing.assert_array_equal(a[4:, 4:], b[4:, 4:])


def test_gradients_of_a_small_conv_vae_match_finite_differences():
    """A conv VAE on 8×8 images (x_dim 64: 8 → 4 → 2), float64, the noise fixed: its loss gradient agrees with
    central differences for the first convolution's bias, the encoder's Linear layer and the last transposed
    convolution's weights (the other layers are the same ops). ReLU has kinks; with this fixed seed no
    pre-activation lies within the 1e-6 step of 0, so gradcheck's default rtol 1e-5 applies."""
    model = models.build("vae", x_dim=64, z_dim=2, arch="conv", dtype="float64")
    x = images(3, side=8)
    parameters = dict(model.named_parameters())
    for name in ("encoder.net.conv1.bias", "encoder.net.linear.bias", "decoder.deconv2.weight"):
        assert tv.gradcheck(
            lambda p: model.loss(x, numpy.random.default_rng(3)).loss, [parameters[name]], name=name
        )


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("vae", {"x_dim": 2}, "arch 'conv' needs square one-channel images"),
        ("vae", {"x_dim": 100}, "side is a multiple"),
        ("mixture", {}, "arch must be 'mlp'"),
    ],
)
def test_conv_is_refused_where_it_cannot_apply(name, fields, message):
    with pytest.raises(ValueError, match=message):
        models.build(name, **{"x_dim": 784, "z_dim": 2, "arch": "conv", **fields})


def test_arch_is_a_checked_config_field():
    with pytest.raises(ValueError, match="arch must be one of"):
        models.VAEConfig(x_dim=784, arch="resnet")
    assert networks.image_side(784) == 28 and networks.image_side(2) is None


def test_checkpoints_record_the_arch_and_rebuild_the_conv_model(tmp_path):
    model = build("vae")
    path = str(tmp_path / "conv.npz")
    checkpoint.save_checkpoint(path, model, tv.optim.Adam(model.parameters()), epoch=1)
    loaded, _ = checkpoint.load_model(path)
    assert loaded.config.arch == "conv" and isinstance(loaded.decoder, networks.ConvDecoder)
    x = images(2)
    numpy.testing.assert_array_equal(loaded.reconstruct(x), model.reconstruct(x))


def test_train_arch_conv_from_the_command_line(tmp_path):
    """`tinyvae train --arch conv` (one epoch on 256 images, with figures) records arch "conv" in
    config.json, and a model without the option refuses the flag."""
    out = tmp_path / "conv"
    args = ["train", "--arch", "conv", "--epochs", "1", "--limit", "256", "--no-progress", "--out", str(out)]
    assert cli.main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["model_config"]["arch"] == "conv"
    assert (out / "samples.png").is_file()
    refused = ["train", "--model", "hvae", "--arch", "conv", "--epochs", "1", "--out", str(tmp_path / "h")]
    with pytest.raises(SystemExit) as stop:  # argparse-style refusal, exit status 2
        cli.main(refused)
    assert stop.value.code == 2


def test_conv_layers_use_the_linear_layers_initialisation_rule():
    """U(±√(3 / fan_in)) with fan_in = C_in · kh · kw: each output has about one input's variance."""
    layer = nn.Conv2d(32, 64, 4, 2, 1, rng=0)
    limit = numpy.sqrt(3.0 / (32 * 16))
    weights = layer.weight.numpy()
    assert weights.min() >= -limit and weights.max() <= limit and weights.std() > 0.5 * limit
