"""Figures: every function writes a valid, non-blank PNG on tiny untrained models, refuses what does not
apply with a clear error, and ``plot_run`` writes exactly the figures that apply to a model and its data."""

import dataclasses
import math
import subprocess
import sys

import matplotlib.image
import numpy
import pytest

from tinyvae import evaluate, models, plots
from tinyvae.models import priors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SHAPE = (4, 4)  # x_dim 16: the smallest images that are still images
METRICS = [
    {
        "epoch": 1,
        "train_loss": 12.0,
        "train_elbo": -12.0,
        "test_elbo": -12.5,
        "train_kl": 1.0,
        "test_kl": 1.1,
    },
    {
        "epoch": 2,
        "train_loss": 10.0,
        "train_elbo": -10.0,
        "test_elbo": -11.0,
        "train_kl": 1.5,
        "test_kl": 1.4,
    },
    {"epoch": 3, "train_recon": -8.0, "test_recon": -9.0, "train_elbo": -9.5, "test_elbo": None},
]


@dataclasses.dataclass
class Split:
    """A stand-in for tinyvae.data.Dataset: the attributes plot_run reads."""

    x: numpy.ndarray
    labels: numpy.ndarray | None
    image_shape: tuple | None
    n_classes: int


def tiny(name, x_dim=16, z_dim=3, **extra):
    extra.setdefault("hidden", (8,))
    return models.build(name, x_dim=x_dim, z_dim=z_dim, **extra)


def toy(name, **extra):
    """A 2-D-latent model of 2-D points with a Gaussian decoder, as trained on the toy datasets."""
    return tiny(name, x_dim=2, z_dim=2, likelihood="gaussian", **extra)


@pytest.fixture(scope="module")
def images():
    rng = numpy.random.default_rng(0)
    x = (rng.uniform(size=(30, 16)) > 0.5).astype(numpy.float32)  # (30, 16) binary "images"
    return Split(x, numpy.arange(30) % 3, IMAGE_SHAPE, 3)


@pytest.fixture(scope="module")
def points():
    rng = numpy.random.default_rng(1)
    angle = rng.uniform(0, 2 * math.pi, 200)
    x = numpy.stack([numpy.cos(angle), numpy.sin(angle)], axis=1) + 0.1 * rng.standard_normal((200, 2))
    return Split(x.astype(numpy.float32), (angle > math.pi).astype(numpy.int64), None, 2)


def assert_png(path):
    """The file exists, starts with the PNG signature, loads, and is not blank (several colours, spread)."""
    assert path.exists(), path
    with open(path, "rb") as file:
        assert file.read(8) == PNG_SIGNATURE, f"{path} is not a PNG"
    pixels = matplotlib.image.imread(path)  # (H, W, 3 or 4) floats in [0, 1]
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50, pixels.shape
    rgb = numpy.round(pixels[..., :3] * 255).astype(numpy.uint32)  # one integer per colour, for speed
    colours = numpy.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    assert len(colours) > 10, f"{path} has {len(colours)} distinct colours: blank"
    assert pixels[..., :3].std() > 0.02, f"{path} is nearly uniform"


def test_the_png_check_can_fail(tmp_path):
    """A blank figure and a file that is not a PNG are both caught by assert_png."""
    blank = plots._figure(2, 2)
    path = plots._save(blank, tmp_path / "blank.png")
    with pytest.raises(AssertionError, match="blank"):
        assert_png(path)
    (tmp_path / "fake.png").write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(AssertionError, match="not a PNG"):
        assert_png(tmp_path / "fake.png")


# ----- the numerical helpers -----
def test_normal_ppf_matches_known_quantiles_and_inverts_the_cdf():
    """Φ⁻¹ gives the textbook quantiles, is odd about ½, and Φ(Φ⁻¹(p)) = p to 1e-12."""
    assert priors.normal_ppf(0.5) == pytest.approx(0.0, abs=1e-12)
    assert priors.normal_ppf(0.95) == pytest.approx(1.6448536269514722, abs=1e-10)
    assert priors.normal_ppf(0.975) == pytest.approx(1.959963984540054, abs=1e-10)
    p = numpy.linspace(0.001, 0.999, 37)
    z = priors.normal_ppf(p)
    numpy.testing.assert_allclose(z, -priors.normal_ppf(1 - p), atol=1e-10)
    cdf = numpy.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z])
    numpy.testing.assert_allclose(cdf, p, atol=1e-12)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        priors.normal_ppf([0.5, 1.0])


def test_principal_components_find_the_direction_of_largest_variance():
    """Points spread along (1, 1, 0) project onto PC 1 with almost all of the variance."""
    rng = numpy.random.default_rng(2)
    t = rng.standard_normal(500)
    data = numpy.outer(t, [1.0, 1.0, 0.0]) + 0.01 * rng.standard_normal((500, 3)) + 5.0
    projected, fractions = plots.principal_components(data, 2)
    assert projected.shape == (500, 2)
    assert fractions[0] > 0.999
    assert abs(numpy.corrcoef(projected[:, 0], t)[0, 1]) > 0.999


# ----- each figure -----
def test_reconstructions_images_and_points(tmp_path, images, points, saved):
    """Originals over reconstructions for images; a scatter with arrows for 2-D data, whose second set of
    points is the model's reconstructions of the data."""
    assert_png(plots.reconstructions(tiny("vae"), images.x, tmp_path / "r.png", image_shape=IMAGE_SHAPE, n=6))
    model = toy("vae")
    assert_png(plots.reconstructions(model, points.x, tmp_path / "r2.png", image_shape=None))
    drawn_sets = [c.get_offsets() for c in saved[-1].axes[0].collections if len(c.get_offsets()) == 200]
    expected = model.reconstruct(points.x)
    assert any(numpy.allclose(offsets, expected, rtol=1e-5) for offsets in drawn_sets)


def test_reconstructions_of_a_conditional_model_need_labels(tmp_path, images, drawn):
    """A CVAE reconstructs with its labels (the figure shows reconstruct(x, y)), and says so when they are
    missing."""
    model = tiny("cvae", n_classes=3)
    path = plots.reconstructions(
        model, images.x, tmp_path / "r.png", y=images.labels, image_shape=IMAGE_SHAPE
    )
    assert_png(path)
    numpy.testing.assert_allclose(
        drawn[-1][10:], model.reconstruct(images.x[:10], images.labels[:10]), rtol=1e-6
    )
    with pytest.raises(ValueError, match="conditional"):
        plots.reconstructions(model, images.x, tmp_path / "bad.png", image_shape=IMAGE_SHAPE)


def test_image_shape_must_match_x_dim(tmp_path, images):
    """An image shape whose pixel count is not x_dim, or None for image data, is a clear error."""
    with pytest.raises(ValueError, match=r"has 25 pixels but the model has x_dim=16"):
        plots.reconstructions(tiny("vae"), images.x, tmp_path / "r.png", image_shape=(5, 5))
    with pytest.raises(ValueError, match="2-D point data"):
        plots.samples_grid(tiny("vae"), 0, tmp_path / "s.png", image_shape=None)


def test_samples_grid_images_and_points(tmp_path, saved):
    """A grid of decoded prior samples; a scatter for 2-D data."""
    assert_png(
        plots.samples_grid(
            tiny("vae"), numpy.random.default_rng(0), tmp_path / "s.png", n=10, image_shape=IMAGE_SHAPE
        )
    )
    model = toy("vae")
    assert_png(plots.samples_grid(model, 0, tmp_path / "s2.png", n=300, image_shape=None))
    offsets = saved[-1].axes[0].collections[0].get_offsets()  # the decoded prior samples, in order
    numpy.testing.assert_allclose(offsets, model.sample(300, numpy.random.default_rng(0)), rtol=1e-5)


@pytest.mark.parametrize("z_dim", [1, 2, 3])
def test_latent_scatter_for_one_two_and_more_latent_dimensions(tmp_path, images, z_dim, saved):
    """Latent means coloured by label: against the label (Z = 1), directly (Z = 2), by PCA (Z > 2); the
    points drawn are those coordinates."""
    model = tiny("vae", z_dim=z_dim)
    path = plots.latent_scatter(model, images.x, images.labels, tmp_path / "z.png")
    assert_png(path)
    offsets = saved[-1].axes[0].collections[0].get_offsets()
    means = model.latent_mean(model.check_x(images.x)).astype(float)
    if z_dim == 1:
        numpy.testing.assert_allclose(offsets[:, 0], means[:, 0], rtol=1e-6)
        assert numpy.all(numpy.abs(offsets[:, 1] - images.labels) <= 0.2)  # the label, jittered
    elif z_dim == 2:
        numpy.testing.assert_allclose(offsets, means, rtol=1e-6)
    else:
        numpy.testing.assert_allclose(offsets, plots.principal_components(means, 2)[0], rtol=1e-5, atol=1e-6)


def test_latent_scatter_checks_the_labels(tmp_path, images, saved):
    """Labels of the wrong length are refused; no labels gives one colour (one set of points, no legend)."""
    assert_png(plots.latent_scatter(tiny("vae"), images.x, None, tmp_path / "z.png"))
    ax = saved[-1].axes[0]
    assert len(ax.collections) == 1 and ax.get_legend() is None and len(ax.collections[0].get_offsets()) == 30
    with pytest.raises(ValueError, match=r"labels must have shape \(30,\)"):
        plots.latent_scatter(tiny("vae"), images.x, images.labels[:5], tmp_path / "bad.png")


def test_manifold_images_points_and_refusals(tmp_path, saved):
    """The decoded lattice for a 2-D latent (images and 2-D data: the dots are the decoder at the prior's
    quantiles); z_dim 3 and a tiny grid are refused."""
    assert_png(plots.manifold(tiny("vae", z_dim=2), tmp_path / "m.png", image_shape=IMAGE_SHAPE, grid=6))
    model = toy("vae")
    assert_png(plots.manifold(model, tmp_path / "m2.png", image_shape=None, grid=8))
    q = model.prior.quantile(numpy.linspace(0.05, 0.95, 8))
    z1, z2 = numpy.meshgrid(q[:, 0], q[::-1, 1])
    lattice = numpy.stack([z1.ravel(), z2.ravel()], axis=1).astype(numpy.float32)
    offsets = saved[-1].axes[0].collections[-1].get_offsets()
    numpy.testing.assert_allclose(offsets, model.decode(lattice), rtol=1e-5)
    with pytest.raises(ValueError, match="z_dim == 2.*got z_dim=3"):
        plots.manifold(tiny("vae", z_dim=3), tmp_path / "bad.png", image_shape=IMAGE_SHAPE)
    with pytest.raises(ValueError, match="grid must be an integer >= 2"):
        plots.manifold(tiny("vae", z_dim=2), tmp_path / "bad.png", image_shape=IMAGE_SHAPE, grid=1)
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_strip(tmp_path, images, points, method, drawn, saved):
    """x_a, the decoded path, x_b: as a strip of images and as a path through 2-D data; both are the
    model's interpolation between the two."""
    path = plots.interpolation_strip(
        tiny("vae"),
        images.x[0],
        images.x[1],
        tmp_path / "i.png",
        steps=5,
        method=method,
        image_shape=IMAGE_SHAPE,
    )
    assert_png(path)
    expected = tiny("vae").interpolate(images.x[0], images.x[1], steps=5, method=method)
    numpy.testing.assert_allclose(drawn[-1][1:-1], expected, rtol=1e-6)
    model = toy("vae")
    assert_png(
        plots.interpolation_strip(model, points.x[0], points.x[1], tmp_path / "i2.png", image_shape=None)
    )
    line = saved[-1].axes[0].get_lines()[0]
    numpy.testing.assert_allclose(
        numpy.stack([line.get_xdata(), line.get_ydata()], axis=1),
        model.interpolate(points.x[0], points.x[1], steps=10),
        rtol=1e-5,
    )


def test_interpolation_strip_passes_the_models_refusal_on(tmp_path, images):
    """An unknown interpolation method is the model's clear ValueError."""
    with pytest.raises(ValueError, match="method must be 'linear' or 'slerp'"):
        plots.interpolation_strip(
            tiny("vae"), images.x[0], images.x[1], tmp_path / "i.png", method="cubic", image_shape=IMAGE_SHAPE
        )


def test_training_curves_plot_what_exists(tmp_path, saved):
    """Rows with some metrics missing (or None), or with per-layer KLs, still plot (one panel per metric
    present, a line per split and layer); empty rows, rows without an epoch or without any known metric are
    refused."""
    assert_png(plots.training_curves(METRICS, tmp_path / "t.png"))
    titles = [ax.get_title() for ax in saved[-1].axes]
    assert [t.split(" (")[0] for t in titles] == ["ELBO", "reconstruction term", "KL term", "loss minimised"]
    assert_png(plots.training_curves([{"epoch": 1, "test_kl": 2.0}], tmp_path / "t1.png"))
    assert len(saved[-1].axes) == 1 and len(saved[-1].axes[0].get_lines()) == 1
    layered = [
        {"epoch": e, "train_kl_1": 2.0 + e, "train_kl_2": 1.0, "test_kl_1": 2.5, "test_elbo": -e}
        for e in (1, 2)
    ]
    assert_png(plots.training_curves(layered, tmp_path / "t2.png"))
    kl_panel = [ax for ax in saved[-1].axes if ax.get_title().startswith("KL")][0]
    assert {line.get_label() for line in kl_panel.get_lines()} >= {"train layer 1", "train layer 2"}
    with pytest.raises(ValueError, match="rows is empty"):
        plots.training_curves([], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="row 0 has no 'epoch'"):
        plots.training_curves([{"train_elbo": -1.0}], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="none of the metrics"):
        plots.training_curves([{"epoch": 1, "accuracy": 0.5}], tmp_path / "bad.png")


def test_kl_per_dimension_bars_and_refusal(tmp_path, images):
    """KL bars with the active units for a Gaussian posterior; evaluate's TypeError for a mixture."""
    assert_png(plots.kl_per_dimension_bars(tiny("vae", z_dim=5), images.x, tmp_path / "k.png"))
    with pytest.raises(TypeError, match="diagonal-Gaussian posterior"):
        plots.kl_per_dimension_bars(tiny("mixture", components=2), images.x, tmp_path / "bad.png")


def test_codebook_usage_hist_and_refusal(tmp_path, images):
    """A histogram of code usage for a VQ-VAE; evaluate's TypeError for a model without a codebook."""
    assert_png(plots.codebook_usage_hist(tiny("vqvae", codebook_size=8), images.x, tmp_path / "c.png"))
    with pytest.raises(TypeError, match="no codebook"):
        plots.codebook_usage_hist(tiny("vae"), images.x, tmp_path / "bad.png")


def test_class_conditional_grid_and_refusal(tmp_path, saved):
    """One row per class for a CVAE (images and 2-D data: the dots are the per-class samples, in class
    order); an unconditional model is refused."""
    assert_png(
        plots.class_conditional_grid(
            tiny("cvae", n_classes=3), 0, tmp_path / "g.png", per_class=4, image_shape=IMAGE_SHAPE
        )
    )
    model = toy("cvae", n_classes=2)
    assert_png(plots.class_conditional_grid(model, 0, tmp_path / "g2.png", per_class=50, image_shape=None))
    rng = numpy.random.default_rng(0)
    expected = numpy.concatenate([model.sample(50, rng, y=c) for c in range(2)])
    numpy.testing.assert_allclose(saved[-1].axes[0].collections[0].get_offsets(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="not conditional"):
        plots.class_conditional_grid(tiny("vae"), 0, tmp_path / "bad.png", image_shape=IMAGE_SHAPE)


@pytest.mark.parametrize(
    "name, extra, family",
    [
        ("vae", {}, "diagonal Gaussian"),
        ("mixture", {"components": 3}, "mixture"),
        ("flow", {"flow_steps": 2}, "normalizing-flow"),
    ],
)
def test_posterior_comparison_for_each_posterior_family(tmp_path, points, name, extra, family, saved):
    """The true posterior on a grid with q's samples over it, for the Gaussian, mixture and flow families:
    300 dots in all (one set per component for the mixture), and the coverage in the title."""
    model = toy(name, **extra)
    assert model.posterior_description.startswith(family)
    assert_png(
        plots.posterior_comparison(model, points.x[0], tmp_path / "p.png", grid=30, n_samples=300, rng=0)
    )
    ax = saved[-1].axes[0]
    dots = [c for c in ax.collections if type(c).__name__ == "PathCollection"]
    assert sum(len(c.get_offsets()) for c in dots) == 300 and len(dots) == (3 if name == "mixture" else 1)
    assert "of q's samples lie in p(z|x)'s 99%" in ax.get_title().replace("\n", " ")


def test_posterior_samples_follow_q(points):
    """Gaussian draws have q's mean and spread; mixture draws land on the components (K = 1 is Gaussian)."""
    rng = numpy.random.default_rng(3)
    model = toy("vae")
    x = points.x[:1]
    mu, logvar = (t.numpy()[0] for t in model.encode(x))
    z = model.posterior_sample(x, 20000, rng)
    numpy.testing.assert_allclose(z.mean(axis=0), mu, atol=0.05)
    numpy.testing.assert_allclose(z.std(axis=0), numpy.exp(0.5 * logvar), rtol=0.05)
    mixture = toy("mixture", components=1)
    _, mu_k, logvar_k = (t.numpy()[0] for t in mixture.encode(x))
    z = mixture.posterior_sample(x, 20000, rng)
    numpy.testing.assert_allclose(z.mean(axis=0), mu_k[0], atol=0.05)
    numpy.testing.assert_allclose(z.std(axis=0), numpy.exp(0.5 * logvar_k[0]), rtol=0.05)


def test_true_log_posterior_of_the_linear_model_is_its_exact_gaussian(points):
    """For the linear-Gaussian model p(z|x) is Gaussian: our grid log-density minus the exact one is the
    same constant (log p(x)) at every z."""
    model = models.build("linear", x_dim=2, z_dim=2)
    x = points.x[:1].astype(numpy.float64)
    mean, cov = (numpy.asarray(a, dtype=numpy.float64) for a in model.true_posterior(x))
    mean, cov = mean.reshape(2), cov.reshape(2, 2)
    z = numpy.random.default_rng(4).standard_normal((50, 2))
    diff = z - mean
    exact = -0.5 * numpy.einsum("ni,ij,nj->n", diff, numpy.linalg.inv(cov), diff)
    gap = plots.true_log_posterior(model, x, z) - exact
    assert gap.std() < 1e-3 * max(1.0, abs(gap.mean()))


def test_posterior_comparison_refusals(tmp_path, points):
    """z_dim other than 2 is a ValueError; a posterior that is not Gaussian, mixture or flow a TypeError."""
    with pytest.raises(ValueError, match="z_dim == 2"):
        plots.posterior_comparison(tiny("vae", x_dim=2, z_dim=3), points.x[0], tmp_path / "bad.png")
    with pytest.raises(TypeError, match="'ae'"):
        plots.posterior_comparison(toy("ae"), points.x[0], tmp_path / "bad.png")


# ----- a whole run -----
RUN_EXPECTED = {
    "vae": {
        "reconstructions",
        "samples",
        "latent_scatter",
        "interpolation",
        "traversal",
        "training_curves",
        "kl_per_dimension",
    },
    "vqvae": {
        "reconstructions",
        "samples",
        "latent_scatter",
        "interpolation",
        "training_curves",
        "codebook_usage",
    },
    "cvae": {
        "reconstructions",
        "class_conditional",
        "latent_scatter",
        "interpolation",
        "traversal",
        "training_curves",
        "kl_per_dimension",
    },
    "ae": {"reconstructions", "latent_scatter", "interpolation", "training_curves"},
}


@pytest.mark.parametrize("name", sorted(RUN_EXPECTED))
def test_plot_run_on_images_writes_the_figures_that_apply(tmp_path, images, name):
    """On image data: the expected set of files for each model, all valid non-blank PNGs, nothing else."""
    extra = {"vqvae": {"codebook_size": 8}, "cvae": {"n_classes": 3}}.get(name, {})
    paths = plots.plot_run(
        tiny(name, **extra), images, images, tmp_path, numpy.random.default_rng(0), METRICS
    )
    assert {p.stem for p in paths} == RUN_EXPECTED[name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    for path in paths:
        assert_png(path)


def test_plot_run_on_toy_data_with_a_2d_latent(tmp_path, points):
    """A 2-D-latent VAE on 2-D points adds the manifold and the posterior picture; no metrics, no curves."""
    paths = plots.plot_run(toy("vae"), points, points, tmp_path / "run", 0)
    expected = {
        "reconstructions",
        "samples",
        "latent_scatter",
        "manifold",
        "interpolation",
        "kl_per_dimension",
        "posterior",
    }
    assert {p.stem for p in paths} == expected
    for path in paths:
        assert_png(path)


def test_plot_run_skips_what_does_not_apply(tmp_path, images):
    """A 2-D-latent VQ-VAE gets no manifold (its prior is uniform over codes), and a conditional model
    without labels is a clear error rather than a half-written run."""
    paths = plots.plot_run(tiny("vqvae", z_dim=2, codebook_size=4), images, images, tmp_path, 0)
    assert "manifold" not in {p.stem for p in paths}
    unlabelled = Split(images.x, None, IMAGE_SHAPE, 3)
    with pytest.raises(ValueError, match="conditional but the test split has no labels"):
        plots.plot_run(tiny("cvae", n_classes=3), unlabelled, unlabelled, tmp_path / "bad", 0)


def test_plotting_leaves_pyplot_alone(tmp_path):
    """The module draws on its own Agg canvases: plotting never imports pyplot, the only route by which
    matplotlib switches a session's backend or keeps figures alive in a global registry."""
    script = (
        "import sys\n"
        "from tinyvae import models, plots\n"
        "m = models.build('vae', x_dim=16, z_dim=2, hidden=(4,))\n"
        f"plots.manifold(m, {str(tmp_path / 'm.png')!r}, image_shape=(4, 4), grid=3)\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert (tmp_path / "m.png").exists()


def test_training_curves_show_every_vq_term_and_keep_later_epochs_readable():
    """The VQ-VAE's codebook and commitment terms have their panels (their names are the loss's terms), and
    a first epoch of thousands beside a converged ~170 puts a positive axis in log scale, where a rise
    from 195 to 354 is visible; a series without such an outlier, or with negative values, stays linear."""
    from tinyvae import figures
    from tinyvae.models import build

    vq = build("vqvae", x_dim=4, z_dim=2, hidden=(3,), codebook_size=4)
    terms = vq.loss(numpy.random.default_rng(0).uniform(size=(5, 4))).terms
    panel_names = {name for _, _, name in plots.CURVE_PANELS}
    assert {"codebook", "commitment", "recon"} <= panel_names and set(terms) <= panel_names
    ax = figures.new_figure(3, 3).add_subplot()
    losses = numpy.array(
        [3364.0, 2275.0, 349.0, 210.0, 195.0, 206.0, 194.0, 219.0, 270.0, 316.0, 350.0, 354.0]
    )
    assert (
        plots._log_scale_if_early_epochs_dwarf_the_rest(ax, [losses]) == " (log scale)"
        and ax.get_yscale() == "log"
    )
    ax = figures.new_figure(3, 3).add_subplot()
    assert (
        plots._log_scale_if_early_epochs_dwarf_the_rest(ax, [-losses]) == "" and ax.get_yscale() == "linear"
    )
    ax = figures.new_figure(3, 3).add_subplot()
    assert (
        plots._log_scale_if_early_epochs_dwarf_the_rest(ax, [losses[4:]]) == ""
        and ax.get_yscale() == "linear"
    )


def test_coverage_of_the_99_percent_region_is_99_percent_for_samples_of_the_density_itself():
    """The number the posterior picture prints: for a standard normal known on a lattice, its own samples fall
    in its 99% region 99% of the time (±0.5% for 20,000 draws), samples shifted by 3 σ far less often."""
    axis = numpy.linspace(-6, 6, 241)
    cell = (axis[1] - axis[0]) ** 2
    z1, z2 = numpy.meshgrid(axis, axis)
    log_density = -0.5 * (z1**2 + z2**2) - numpy.log(2 * numpy.pi)
    rng = numpy.random.default_rng(0)

    def log_pdf(z):
        return -0.5 * (z**2).sum(axis=1) - numpy.log(2 * numpy.pi)

    own = rng.standard_normal((20_000, 2))
    assert plots.coverage(log_density, cell, log_pdf(own)) == pytest.approx(0.99, abs=0.005)
    assert plots.coverage(log_density, cell, log_pdf(own + 3.0)) < 0.5


# ---------------------------------------------------------------------------------------------------------
# What the image figures tile is exactly what they claim to show (the lessons' content is judged on trained
# models in tests/test_figure_content.py)


def test_the_image_figures_tile_what_they_say(tmp_path, images, drawn):
    """Reconstructions: the first n examples above model.reconstruct of them. Samples: model.sample with the
    same generator. Class-conditional grid: row c is model.sample(per_class, ·, y=c). Manifold: the decoder
    at the prior's quantiles, highest z₂ in the top row. Interpolation: x_a, model.interpolate, x_b."""
    model = tiny("vae", z_dim=2)
    plots.reconstructions(model, images.x, tmp_path / "r.png", image_shape=IMAGE_SHAPE, n=6)
    numpy.testing.assert_allclose(drawn[-1][:6], images.x[:6])
    numpy.testing.assert_allclose(drawn[-1][6:], model.reconstruct(images.x[:6]), rtol=1e-6)
    plots.samples_grid(model, numpy.random.default_rng(3), tmp_path / "s.png", n=9, image_shape=IMAGE_SHAPE)
    numpy.testing.assert_allclose(drawn[-1], model.sample(9, numpy.random.default_rng(3)), rtol=1e-6)
    plots.manifold(model, tmp_path / "m.png", image_shape=IMAGE_SHAPE, grid=4)
    q = model.prior.quantile(numpy.linspace(0.05, 0.95, 4))
    corner = numpy.array([[q[0, 0], q[-1, 1]]], dtype=numpy.float32)  # top-left tile: lowest z₁, highest z₂
    numpy.testing.assert_allclose(drawn[-1][0], model.decode(corner)[0], rtol=1e-6)
    plots.interpolation_strip(
        model, images.x[0], images.x[1], tmp_path / "i.png", steps=5, image_shape=IMAGE_SHAPE
    )
    numpy.testing.assert_allclose(drawn[-1][0], images.x[0])
    numpy.testing.assert_allclose(drawn[-1][-1], images.x[1])
    numpy.testing.assert_allclose(
        drawn[-1][1:-1], model.interpolate(images.x[0], images.x[1], steps=5), rtol=1e-6
    )
    cvae = tiny("cvae", n_classes=3)
    plots.class_conditional_grid(cvae, numpy.random.default_rng(4), tmp_path / "c.png", 5, IMAGE_SHAPE)
    rng = numpy.random.default_rng(4)
    expected = numpy.concatenate([cvae.sample(5, rng, y=c) for c in range(3)])
    numpy.testing.assert_allclose(drawn[-1], expected, rtol=1e-6)


def test_the_chart_figures_draw_the_numbers_they_name(tmp_path, images, points, saved):
    """Read back from the saved Figures: the latent scatter's points are the latent means; the KL bars are
    evaluate.kl_per_dimension and the activity bars evaluate.active_units; the codebook histogram's bars are
    the usage counts; the training curves' lines are the metrics; the posterior picture's dots are q's
    samples, and its title gives their coverage of the true posterior's 99% region."""
    model = tiny("vae", z_dim=2)
    plots.latent_scatter(model, images.x, images.labels, tmp_path / "z.png")
    offsets = saved[-1].axes[0].collections[0].get_offsets()
    numpy.testing.assert_allclose(
        offsets, model.latent_mean(model.check_x(images.x)).astype(float), rtol=1e-6
    )

    model = tiny("vae", z_dim=5)
    plots.kl_per_dimension_bars(model, images.x, tmp_path / "k.png")
    left, right = saved[-1].axes[:2]
    heights = [patch.get_height() for patch in left.patches]
    numpy.testing.assert_allclose(heights, evaluate.kl_per_dimension(model, images.x), rtol=1e-6)
    activity = [patch.get_height() for patch in right.patches]
    numpy.testing.assert_allclose(
        activity, numpy.maximum(evaluate.active_units(model, images.x)[1], 1e-12), rtol=1e-6
    )

    vq = tiny("vqvae", codebook_size=8)
    plots.codebook_usage_hist(vq, images.x, tmp_path / "c.png")
    counts = [patch.get_height() for patch in saved[-1].axes[0].patches]
    numpy.testing.assert_array_equal(counts, vq.codebook_usage(images.x)["counts"])

    plots.training_curves(METRICS, tmp_path / "t.png")
    elbo_axes = saved[-1].axes[0]
    train_line = elbo_axes.get_lines()[0]
    numpy.testing.assert_allclose(train_line.get_ydata(), [row.get("train_elbo") for row in METRICS])

    flow = toy("flow", flow_steps=2)
    plots.posterior_comparison(flow, points.x[0], tmp_path / "p.png", grid=30, n_samples=300, rng=0)
    ax = saved[-1].axes[0]
    assert len(ax.collections[-1].get_offsets()) == 300
    assert "% of q's samples lie in p(z|x)'s 99%" in ax.get_title().replace("\n", " ")
