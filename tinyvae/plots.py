"""Figures of what a model learned, each written to one PNG whose path the function returns.

Every function draws on a ``matplotlib.figure.Figure`` with its own ``FigureCanvasAgg``, never through
``pyplot``: nothing global changes (no backend switch, no figure registry), so a user's interactive session
is untouched and nothing needs closing. Axes and titles are labelled so that each figure explains itself.

* :func:`reconstructions` — originals above, reconstructions below (2-D data: a scatter with arrows).
* :func:`samples_grid` — decoder means of prior samples.
* :func:`latent_scatter` — latent means coloured by label (2-D latents directly, else the first two PCs).
* :func:`manifold` — the decoder over a grid of the central 90% of N(0, 1) per axis, for 2-D latents.
* :func:`latent_traversal` — each latent dimension swept over the prior with the others held fixed.
* :func:`interpolation_strip` — decoded points along the latent path between two examples.
* :func:`training_curves` — ELBO, reconstruction and KL per epoch, train and test, from metrics rows.
* :func:`kl_per_dimension_bars` — KL(q(z_j|x) ‖ N(0, 1)) per dimension with the active units marked.
* :func:`codebook_usage_hist` — how often each code of a VQ-VAE is chosen.
* :func:`class_conditional_grid` — one row of samples per class for a conditional model.
* :func:`posterior_comparison` — the true posterior p(z|x) on a grid against samples of q(z|x).
* :func:`plot_run` — every figure that applies to a model and its data.

Images are shown with pixel values clipped to [0, 1] (Bernoulli probabilities, or Gaussian means of data
scaled to [0, 1]); tiles are separated by white lines.
"""

from __future__ import annotations

import math
import pathlib

import numpy
from matplotlib.ticker import MaxNLocator

from tinyvae import evaluate, figures
from tinyvae.autodiff import no_grad
from tinyvae.models.priors import normal_ppf  # noqa: F401  (kept here for plots.normal_ppf users)
from tinyvae.models.vqvae import codebook_usage_figure as codebook_usage_hist  # noqa: F401  (the VQ-VAE draws it)
from tinyvae.nn import as_generator
from tinyvae.tensor import Tensor, host_array

DPI = figures.DPI


# ----------------------------------------------------------------------------------------------------------
# Small numerical helpers
# ----------------------------------------------------------------------------------------------------------


def principal_components(points, k=2):
    """(projections (N, k), explained-variance fractions (k,)) of the rows of ``points`` by an SVD of the
    centred data: centred = U S Vᵀ, the rows of Vᵀ are the principal directions and S² / Σ S² the
    fractions of variance they explain."""
    centred = points - points.mean(axis=0)  # (N, D)
    _, s, vt = numpy.linalg.svd(centred, full_matrices=False)
    total = float((s**2).sum())
    fractions = (s[:k] ** 2) / total if total > 0 else numpy.zeros(min(k, len(s)))
    return centred @ vt[:k].T, fractions  # (N, k), (k,)


# ----------------------------------------------------------------------------------------------------------
# Figure plumbing
# ----------------------------------------------------------------------------------------------------------


_figure, _save = figures.new_figure, figures.save_png


def _check_image_shape(function, model, image_shape):
    """Validate ``image_shape`` against the model's x_dim; None means 2-D point data (x_dim must be 2)."""
    x_dim = model.config.x_dim
    if image_shape is None:
        if x_dim != 2:
            raise ValueError(
                f"{function}: image_shape=None means 2-D point data, but the model has x_dim={x_dim}; pass "
                "the image shape (for example (28, 28))"
            )
        return None
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 2 or math.prod(image_shape) != x_dim:
        raise ValueError(
            f"{function}: image_shape {image_shape} has {math.prod(image_shape)} pixels but the model has "
            f"x_dim={x_dim}; pass (height, width) with height * width == x_dim"
        )
    return image_shape


_mosaic = figures.mosaic  # module-level, so the tests can capture what every figure tiles


def _show_mosaic(ax, canvas, image_shape, row_labels=None, col_labels=None, pad=1):
    """Draw a mosaic in grey with tick labels at the tile centres (no ticks where no labels are given)."""
    h, w = image_shape
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks([r * (h + pad) + (h - 1) / 2 for r in range(len(row_labels or []))])
    ax.set_yticklabels(row_labels or [])
    ax.set_xticks([c * (w + pad) + (w - 1) / 2 for c in range(len(col_labels or []))])
    ax.set_xticklabels(col_labels or [])
    ax.tick_params(length=0)


def _label_points(ax):
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_aspect("equal", adjustable="datalim")


# ----------------------------------------------------------------------------------------------------------
# The figures
# ----------------------------------------------------------------------------------------------------------


def reconstructions(model, x, path, y=None, image_shape=(28, 28), n=10):
    """Originals (top row) above their reconstructions E[x | z = latent_mean(x)] (bottom row), for the first
    ``n`` examples of ``x``. With ``image_shape=None`` (2-D data) a scatter of every point of ``x`` (up to
    2,000) and of its reconstruction, with arrows from the first ``n`` originals to their reconstructions."""
    image_shape = _check_image_shape("reconstructions", model, image_shape)
    data = host_array(x)
    labels = None if y is None else numpy.asarray(y)
    if image_shape is not None:
        data, labels = data[:n], None if labels is None else labels[:n]
    else:
        data, labels = data[:2000], None if labels is None else labels[:2000]
    recon = host_array(model.reconstruct(data, labels))
    if image_shape is None:
        figure = _figure(5.5, 5)
        ax = figure.add_subplot()
        ax.scatter(data[:, 0], data[:, 1], s=6, alpha=0.5, color="tab:blue", label="data x")
        ax.scatter(recon[:, 0], recon[:, 1], s=6, alpha=0.5, color="tab:orange", label="reconstruction")
        for original, rebuilt in zip(data[:n], recon[:n], strict=True):
            ax.annotate("", xy=rebuilt, xytext=original, arrowprops={"arrowstyle": "->", "color": "0.3"})
        _label_points(ax)
        ax.legend(loc="best")
    else:
        count = len(data)
        figure = _figure(max(3.0, 0.8 * count + 1.5), 2.6)
        ax = figure.add_subplot()
        canvas = _mosaic(numpy.concatenate([data, recon]), 2, count, image_shape)
        _show_mosaic(ax, canvas, image_shape, row_labels=["original", "reconstruction"])
        ax.set_xlabel(f"the first {count} examples")
    ax.set_title(f"{model.name}: reconstructions E[x | z = latent mean of x]")
    figure.tight_layout()
    return _save(figure, path)


def samples_grid(model, rng, path, n=64, y=None, image_shape=(28, 28)):
    """``n`` samples: z from the model's prior, shown as decoder means E[x|z] (sharper than noisy draws), in
    a square-ish grid; with ``image_shape=None`` (2-D data) a scatter of the decoded points. ``y``: labels
    for a conditional model (an int for all, or n labels)."""
    image_shape = _check_image_shape("samples_grid", model, image_shape)
    samples = host_array(model.sample(n, as_generator(rng), y=y))
    if image_shape is None:
        figure = _figure(5.5, 5)
        ax = figure.add_subplot()
        ax.scatter(samples[:, 0], samples[:, 1], s=6, alpha=0.5, color="tab:green")
        _label_points(ax)
    else:
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        figure = _figure(max(3.0, 0.5 * cols + 1), 0.5 * rows + 1)
        ax = figure.add_subplot()
        _show_mosaic(ax, _mosaic(samples, rows, cols, image_shape), image_shape)
    ax.set_title(f"{model.name}: {n} samples, decoder means E[x|z] with z ~ {model.prior.description}")
    figure.tight_layout()
    return _save(figure, path)


def latent_scatter(model, x, labels, path, y=None):
    """The latent point estimate ``model.latent_mean(x)`` of every example, coloured by ``labels`` (None: one
    colour). Two latent dimensions are plotted directly; more are projected on their first two principal
    components (the axes say how much variance each explains); one is plotted against the label."""
    data = model.check_x(x)
    conditions = model.check_y(y, data.shape[0])
    with no_grad():
        means = host_array(model.latent_mean(data, conditions))  # (N, Z)
    z_dim = means.shape[1]
    colours = None if labels is None else numpy.asarray(labels)
    if colours is not None and colours.shape != (len(means),):
        raise ValueError(
            f"latent_scatter: labels must have shape ({len(means)},), one per example, got {colours.shape}"
        )
    if z_dim == 2:
        points, axis_names = means, ("z₁", "z₂")
        how = "latent means"
    elif z_dim == 1:
        rank = colours if colours is not None else numpy.zeros(len(means))
        jitter = as_generator(0).uniform(-0.2, 0.2, len(means))
        points, axis_names = numpy.stack([means[:, 0], rank + jitter], axis=1), ("z₁", "label (jittered)")
        how = "latent means (one dimension)"
    else:
        points, fractions = principal_components(means, 2)
        axis_names = tuple(
            f"PC {i + 1} of the latent means ({100 * f:.0f}% of variance)" for i, f in enumerate(fractions)
        )
        how = f"first two principal components of the {z_dim}-D latent means"
    figure = _figure(6.5, 5.5)
    ax = figure.add_subplot()
    if colours is None:
        ax.scatter(points[:, 0], points[:, 1], s=5, alpha=0.6)
    else:
        classes = numpy.unique(colours)
        cmap = "tab10" if len(classes) <= 10 else "viridis"
        dots = ax.scatter(points[:, 0], points[:, 1], c=colours, s=5, alpha=0.7, cmap=cmap)
        if len(classes) <= 10:
            handles, names = dots.legend_elements()
            ax.legend(handles, names, title="label", loc="best", fontsize="small")
        else:
            figure.colorbar(dots, ax=ax, label="label")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(f"{model.name}: {how}")
    figure.tight_layout()
    return _save(figure, path)


def manifold(model, path, image_shape=(28, 28), grid=15, y=None):
    """The decoder E[x|z] over a grid × grid lattice of z whose coordinates are the 5% … 95% quantiles of
    the prior's marginals (``model.prior.quantile``: Φ⁻¹(0.05) … Φ⁻¹(0.95) for N(0, I); the central 90% of
    the prior on each axis, evenly spaced in probability, as in Kingma & Welling 2014, Fig. 4), for a model
    with two latent dimensions. Rows run from
    high z₂ (top) to low z₂. With ``image_shape=None`` (2-D data) the image of the lattice: decoded points
    with the lattice lines drawn through them. ``y``: one label, for a conditional model."""
    z_dim = model.config.z_dim
    if z_dim != 2:
        raise ValueError(
            f"manifold: needs a model with z_dim == 2 (a plane of latents to tile), got z_dim={z_dim}"
        )
    if not isinstance(grid, int) or grid < 2:
        raise ValueError(f"manifold: grid must be an integer >= 2, got {grid!r}")
    image_shape = _check_image_shape("manifold", model, image_shape)
    quantiles = model.prior.quantile(numpy.linspace(0.05, 0.95, grid))  # (G, 2)
    values, values2 = quantiles[:, 0], quantiles[:, 1]
    z1, z2 = numpy.meshgrid(values, values2[::-1])  # row 0 is the highest z₂
    z = numpy.stack([z1.ravel(), z2.ravel()], axis=1)  # (G², 2), row-major as the mosaic
    labels = None if y is None else numpy.full(len(z), int(y))
    decoded = host_array(model.decode(z, labels))  # (G², x_dim)
    condition = "" if y is None else f", label {int(y)}"
    if image_shape is None:
        figure = _figure(6, 5.5)
        ax = figure.add_subplot()
        lattice = decoded.reshape(grid, grid, 2)
        for i in range(grid):
            ax.plot(lattice[i, :, 0], lattice[i, :, 1], color="0.7", linewidth=0.8)
            ax.plot(lattice[:, i, 0], lattice[:, i, 1], color="0.7", linewidth=0.8)
        dots = ax.scatter(decoded[:, 0], decoded[:, 1], c=z[:, 0], s=10, cmap="viridis")
        figure.colorbar(dots, ax=ax, label="z₁")
        _label_points(ax)
    else:
        figure = _figure(max(4.0, 0.45 * grid + 1.5), max(4.0, 0.45 * grid + 1.2))
        ax = figure.add_subplot()
        ticks = [[f"{v:.2f}".replace("-0.00", "0.00") for v in axis] for axis in (values, values2)]  # ±0
        _show_mosaic(ax, _mosaic(decoded, grid, grid, image_shape), image_shape, ticks[1][::-1], ticks[0])
        ax.tick_params(axis="x", labelrotation=90)
        ax.set_xlabel(f"z₁ (quantiles 5% … 95% of the prior, {model.prior.description})")
        ax.set_ylabel(f"z₂ (quantiles 5% … 95% of the prior, {model.prior.description})")
    ax.set_title(f"{model.name}: decoded latent grid E[x|z]{condition}")
    figure.tight_layout()
    return _save(figure, path)


TRAVERSAL_QUANTILES = (0.05, 0.95)  # the central 90% of the prior on each axis, as in the manifold


def traversal_images(model, x, steps=9, y=None):
    """The decoded latent traversal of the first example of ``x``, and what orders its rows.

    z* = ``model.latent_mean(x[0])``; for each latent dimension j, z_j takes ``steps`` values from the 5% to
    the 95% quantile of the prior's marginal (``model.prior.quantile``) while the other coordinates stay at
    z*, and each point is decoded (Higgins et al. 2017, Fig. 1 and 7, traverse a latent this way). Rows are
    sorted by the activity of each dimension: the variance over the examples ``x`` of their posterior means
    (Burda et al. 2016, Sec. 5.2's measure of an active unit), largest first — a dimension the encoder
    ignores decodes to one picture along its row and lands at the bottom.

    Returns ``(images, dims, values, activity)``: images (Z, steps, x_dim), row r sweeping dimension
    ``dims[r]``; values (steps, Z), the value of z_j at step i is ``values[i, j]``; activity (Z,) per
    dimension (unsorted). ``y``: one label, for a conditional model.
    """
    if model.latent_kind != "gaussian":
        raise TypeError(
            f"latent_traversal: {model.name!r} has a {model.latent_kind} latent; a traversal sweeps one "
            'coordinate of a continuous latent with a prior over it (latent_kind == "gaussian")'
        )
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"latent_traversal: steps must be an integer >= 2, got {steps!r}")
    data = model.check_x(x)
    labels = None if y is None else numpy.full(data.shape[0], int(y))
    with no_grad():
        means = host_array(model.latent_mean(data, model.check_y(labels, data.shape[0])))  # (N, Z)
    z_dim = means.shape[1]
    activity = means.var(axis=0) if len(means) > 1 else numpy.zeros(z_dim)  # (Z,)
    dims = numpy.argsort(-activity, kind="stable")  # most active first
    values = host_array(model.prior.quantile(numpy.linspace(*TRAVERSAL_QUANTILES, steps)))  # (steps, Z)
    z = numpy.repeat(means[:1], z_dim * steps, axis=0).reshape(z_dim, steps, z_dim)  # (row, step, Z)
    for row, j in enumerate(dims):
        z[row, :, j] = values[:, j]
    decode_labels = None if y is None else numpy.full(z_dim * steps, int(y))
    decoded = host_array(model.decode(z.reshape(-1, z_dim).astype(model.dtype), decode_labels))
    return decoded.reshape(z_dim, steps, -1), dims, values, activity


def latent_traversal(model, x, path, steps=9, y=None, image_shape=(28, 28)):
    """One row per latent dimension, its value swept over the prior's central 90% while the others stay at
    the first example's posterior mean; rows sorted by how much each dimension varies over the examples
    ``x`` (see :func:`traversal_images`). A disentangled model changes one factor of the picture per row."""
    image_shape = _check_image_shape("latent_traversal", model, image_shape)
    if image_shape is None:
        raise ValueError("latent_traversal: draws images; pass image_shape (for example (28, 28))")
    images, dims, _, activity = traversal_images(model, x, steps, y)
    z_dim = len(dims)
    figure = _figure(max(4.0, 0.45 * steps + 2.5), max(3.0, 0.45 * z_dim + 1.2))
    ax = figure.add_subplot()
    rows = [f"z{j + 1} (var {activity[j]:.2f})" for j in dims]
    quantiles = [f"{q:.0%}" for q in numpy.linspace(*TRAVERSAL_QUANTILES, steps)]
    canvas = _mosaic(images.reshape(z_dim * steps, -1), z_dim, steps, image_shape)
    _show_mosaic(ax, canvas, image_shape, rows, quantiles)
    ax.set_xlabel(f"the swept coordinate at these quantiles of the prior ({model.prior.description})")
    ax.set_title(f"{model.name}: latent traversals of one test example, most active dimension first")
    figure.tight_layout()
    return _save(figure, path)


def interpolation_strip(model, x_a, x_b, path, steps=10, method="linear", image_shape=(28, 28), y=None):
    """``x_a``, then the decoded points of ``model.interpolate(x_a, x_b, steps, method)`` (the ``method``
    path between their latent means, t = 0 … 1), then ``x_b``. With ``image_shape=None`` (2-D data) the path
    drawn in data space between the two points. ``y``: one label, for a conditional model."""
    image_shape = _check_image_shape("interpolation_strip", model, image_shape)
    start, end = host_array(x_a).reshape(-1), host_array(x_b).reshape(-1)
    path_points = host_array(model.interpolate(start, end, steps=steps, method=method, y=y))  # (steps, x_dim)
    condition = "" if y is None else f", label {int(y)}"
    if image_shape is None:
        figure = _figure(5.5, 5)
        ax = figure.add_subplot()
        ax.plot(
            path_points[:, 0], path_points[:, 1], "-o", color="tab:purple", markersize=4, label="decoded path"
        )
        ax.scatter(*start, marker="*", s=150, color="tab:blue", label="x_a", zorder=3)
        ax.scatter(*end, marker="*", s=150, color="tab:red", label="x_b", zorder=3)
        _label_points(ax)
        ax.legend(loc="best")
    else:
        figure = _figure(max(4.0, 0.75 * (steps + 2) + 1), 2.2)
        ax = figure.add_subplot()
        strip = numpy.concatenate([start[None], path_points, end[None]])
        names = ["x_a", *(f"{t:.2f}" for t in numpy.linspace(0, 1, steps)), "x_b"]
        _show_mosaic(ax, _mosaic(strip, 1, steps + 2, image_shape), image_shape, col_labels=names)
        ax.set_xlabel("t along the latent path (decoded means), between the two originals")
    ax.set_title(f"{model.name}: {method} interpolation between latent means{condition}")
    figure.tight_layout()
    return _save(figure, path)


# (panel title, y-axis label, the metric it shows as train_<metric> and test_<metric>)
CURVE_PANELS = (
    ("ELBO", "nats per example", "elbo"),
    ("reconstruction term", "E_q[log p(x|z)], nats", "recon"),
    ("KL term", "nats per example", "kl"),
    ("loss minimised", "loss", "loss"),
    ("codebook term", "‖sg[z_e] − e‖² per example", "codebook"),  # vector quantisation
    ("commitment term", "‖z_e − sg[e]‖² per example", "commitment"),
)


def training_curves(rows, path):
    """ELBO, reconstruction and KL (and the loss, when recorded) against the epoch, one panel each, with
    train and test as separate lines. ``rows`` are dicts as written to metrics.jsonl: each has ``epoch``
    and any of ``train_elbo``, ``test_elbo``, ``train_recon``, ``test_recon``, ``train_kl``, ``test_kl``,
    ``train_loss``, ``test_loss`` (and ``train_kl_1`` … per layer of a hierarchical VAE, drawn in the KL
    panel); missing or non-finite values leave a gap."""
    rows = list(rows)
    if not rows:
        raise ValueError("training_curves: rows is empty; pass the metrics rows of at least one epoch")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "epoch" not in row:
            raise ValueError(f"training_curves: row {i} has no 'epoch' (got {row!r})")
    epochs = numpy.array([float(row["epoch"]) for row in rows])

    def series(key):
        values = numpy.array([_finite_or_nan(row.get(key)) for row in rows])
        return values if numpy.isfinite(values).any() else None

    panels = []
    for title, unit, name in CURVE_PANELS:
        lines = [(split, split, series(f"{split}_{name}")) for split in ("train", "test")]
        if name == "kl":  # a hierarchical VAE records one KL per layer, kl_1 … kl_T
            layers = sorted({int(k.rsplit("_", 1)[1]) for row in rows for k in row if _is_layer_kl(k)})
            for t in layers:
                lines += [
                    (split, f"{split} layer {t}", series(f"{split}_kl_{t}")) for split in ("train", "test")
                ]
        lines = [line for line in lines if line[2] is not None]
        if lines:
            panels.append((title, unit, lines))
    if not panels:
        known = [f"{split}_{name}" for _, _, name in CURVE_PANELS for split in ("train", "test")]
        raise ValueError(f"training_curves: the rows have none of the metrics {known}")
    figure = _figure(4.2 * len(panels), 3.6)
    for i, (title, unit, lines) in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), i + 1)
        for j, (split, label, values) in enumerate(lines):
            colour = f"C{j // 2}" if len(lines) > 2 else {"train": "tab:blue", "test": "tab:orange"}[split]
            linestyle = "-" if split == "train" else "--"
            ax.plot(epochs, values, color=colour, linestyle=linestyle, marker="o", markersize=3, label=label)
        ax.set_title(
            title + _log_scale_if_early_epochs_dwarf_the_rest(ax, [values for _, _, values in lines])
        )
        ax.set_xlabel("epoch")
        ax.set_ylabel(unit)
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
    figure.suptitle("training curves")
    figure.tight_layout()
    return _save(figure, path)


def _log_scale_if_early_epochs_dwarf_the_rest(ax, series):
    """When the early epochs' values dwarf the rest (an untrained VQ-VAE's loss of thousands beside a
    converged 170 flattens every later change into a line) and every value is positive, draw the axis in
    log scale; returns a note for the title ("" when the axis is left linear)."""
    values = numpy.concatenate(series)
    values = values[numpy.isfinite(values)]
    late = numpy.concatenate([s[len(s) // 2 :] for s in series])
    late = late[numpy.isfinite(late)]
    if len(late) < 2 or values.min() <= 0:
        return ""
    span_late = max(late.max() - late.min(), 1e-9 * late.max())
    if values.max() - values.min() <= 10 * span_late:
        return ""
    ax.set_yscale("log")
    return " (log scale)"


def _is_layer_kl(key):
    """True for "train_kl_3" / "test_kl_1": the per-layer KLs of a hierarchical VAE."""
    split, _, rest = key.partition("_kl_")
    return split in ("train", "test") and rest.isdigit()


def _finite_or_nan(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def kl_per_dimension_bars(model, x, path, y=None, threshold=1e-2):
    """Left: the mean KL(q(z_j|x) ‖ N(0, 1)) of each latent dimension over ``x``
    (:func:`tinyvae.evaluate.kl_per_dimension`), the active units (:func:`tinyvae.evaluate.active_units`,
    Cov_x E[z_j|x] > ``threshold``) in colour and the inactive (collapsed) ones in grey. Right: that
    activity statistic per dimension on a log scale, with the threshold drawn. A model without a
    diagonal-Gaussian posterior is refused with evaluate's TypeError."""
    kl = evaluate.kl_per_dimension(model, x, y=y)  # (Z,); raises TypeError for non-Gaussian posteriors
    count, activity = evaluate.active_units(model, x, threshold=threshold, y=y)
    active = activity > threshold
    dims = numpy.arange(1, len(kl) + 1)
    colours = numpy.where(active, "tab:blue", "0.7")
    figure = _figure(max(8.0, 0.35 * len(kl) * 2 + 2), 3.8)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    left.bar(dims, kl, color=colours)
    left.set_xlabel("latent dimension j")
    left.set_ylabel("mean KL(q(z_j|x) ‖ N(0,1)), nats")
    left.set_title(f"KL per dimension (total {kl.sum():.2f} nats)")
    for ax in (left, right):  # whole dimensions only, never 2.5
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.bar(dims, numpy.maximum(activity, 1e-12), color=colours)
    right.axhline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
    right.set_yscale("log")
    right.set_xlabel("latent dimension j")
    right.set_ylabel("Cov_x E[z_j | x]")
    right.set_title("activity (blue: active, grey: inactive)")
    right.legend(
        loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small"
    )  # beside the bars, not on them
    figure.suptitle(f"{model.name}: {count} of {len(kl)} latent units active")
    figure.tight_layout()
    return _save(figure, path)


def class_conditional_grid(model, rng, path, per_class=8, image_shape=(28, 28)):
    """For a conditional model, ``per_class`` samples (decoder means, z ~ p(z)) of every class, one row per
    class; with ``image_shape=None`` (2-D data) a scatter coloured by class."""
    if not model.conditional:
        raise ValueError(
            f"class_conditional_grid: model {model.name!r} is not conditional (it takes no label y); "
            "use samples_grid"
        )
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"class_conditional_grid: per_class must be a positive integer, got {per_class!r}")
    image_shape = _check_image_shape("class_conditional_grid", model, image_shape)
    n_classes = model.config.n_classes
    labels = numpy.repeat(numpy.arange(n_classes), per_class)  # (C·per_class,), class-major
    samples = host_array(model.sample(len(labels), as_generator(rng), y=labels))
    if image_shape is None:
        figure = _figure(6.5, 5.5)
        ax = figure.add_subplot()
        dots = ax.scatter(
            samples[:, 0], samples[:, 1], c=labels, s=8, cmap="tab10" if n_classes <= 10 else "viridis"
        )
        figure.colorbar(dots, ax=ax, label="class y")
        _label_points(ax)
    else:
        figure = _figure(max(3.0, 0.5 * per_class + 1.5), 0.5 * n_classes + 1)
        ax = figure.add_subplot()
        canvas = _mosaic(samples, n_classes, per_class, image_shape)
        _show_mosaic(ax, canvas, image_shape, row_labels=[f"y = {c}" for c in range(n_classes)])
        ax.set_xlabel(f"{per_class} samples per class")
    ax.set_title(f"{model.name}: class-conditional samples E[x | z, y], z ~ p(z)")
    figure.tight_layout()
    return _save(figure, path)


# ----- the posterior picture -----
def true_log_posterior(model, x, z, y=None):
    """log p(x|z) + log p(z) (the model's prior) for every row of z (M, z_dim) and one example x (1, x_dim):
    the log of the true posterior p(z|x) up to its constant log p(x). Returns (M,) float64."""
    with no_grad():
        z_t = Tensor(numpy.asarray(z, dtype=model.dtype))
        labels = None if y is None else numpy.full(len(z), int(y[0]))
        decoded = model.decode_logits(z_t, labels)  # (M, x_dim)
        log_lik = model.likelihood.log_prob(decoded, Tensor(numpy.asarray(x, dtype=model.dtype)))  # (M,)
        return host_array(log_lik) + host_array(model.prior.log_prob(z_t))


def coverage(log_density, cell, sample_log_density, mass=0.99):
    """The fraction of samples inside the region that holds ``mass`` of a density known on a lattice
    (``log_density``: normalised log-densities of cells of area ``cell``): the densest cells, taken until
    they add up to ``mass``, set a level, and a sample is inside where its log-density (on the same,
    normalised scale) is at or above it. For q's samples against the true posterior: about ``mass`` when q
    fits p(z|x), less when q puts samples where p(z|x) has little mass."""
    order = numpy.sort(numpy.ravel(log_density))[::-1]
    cumulative = numpy.cumsum(numpy.exp(order)) * cell
    level = order[min(int(numpy.searchsorted(cumulative, mass)), len(order) - 1)]
    return float(numpy.mean(numpy.asarray(sample_log_density) >= level))


def _grid_over(lo, hi, grid):
    axes = [numpy.linspace(lo[d], hi[d], grid) for d in range(2)]
    z1, z2 = numpy.meshgrid(*axes)
    return axes, numpy.stack([z1.ravel(), z2.ravel()], axis=1)  # (G², 2)


def posterior_comparison(model, x_point, path, grid=100, n_samples=2000, rng=None, y=None):
    """The true posterior p(z|x) ∝ p(x|z) p(z) of one example, computed on a grid × grid lattice of z
    (filled contours of the normalised density), with ``n_samples`` draws of the model's q(z|x) on top —
    where the two disagree is the gap between log p(x) and the ELBO, KL(q(z|x) ‖ p(z|x)). For models with
    two latent dimensions and a posterior sampler (``model.posterior_description`` is not None; the samples
    come from ``model.posterior_sample``).

    The lattice is first laid over [−4, 4]² and the q samples, then zoomed onto where the true posterior
    and the samples lie, so a sharp posterior is not lost between grid points."""
    z_dim = model.config.z_dim
    if z_dim != 2:
        raise ValueError(
            f"posterior_comparison: needs a model with z_dim == 2 (a plane to grid), got {z_dim}"
        )
    if not isinstance(grid, int) or grid < 10:
        raise ValueError(f"posterior_comparison: grid must be an integer >= 10, got {grid!r}")
    if model.posterior_description is None:
        raise TypeError(
            f"posterior_comparison: model {model.name!r} ({type(model).__name__}) has no posterior sampler "
            "q(z|x) over the latent its decoder reads, to compare with the true posterior"
        )
    rng = as_generator(0 if rng is None else rng)
    x = model.check_x(numpy.reshape(host_array(x_point), (1, -1))).numpy()  # (1, x_dim)
    labels = model.check_y(None if y is None else numpy.full(1, int(y)), 1)
    with no_grad():
        samples, parts = model.posterior_sample_parts(x, n_samples, rng, labels)  # (n, 2), (n,) or None
    samples = host_array(samples)

    # Pass 1: a wide lattice; pass 2: zoom onto the box holding the posterior's mass and the samples.
    finite = samples[numpy.isfinite(samples).all(axis=1)]
    box_lo = numpy.minimum(-4.0, numpy.percentile(finite, 0.5, axis=0) if len(finite) else -4.0)
    box_hi = numpy.maximum(4.0, numpy.percentile(finite, 99.5, axis=0) if len(finite) else 4.0)
    _, z = _grid_over(box_lo, box_hi, grid)
    log_p = true_log_posterior(model, x, z, labels)
    heavy = z[log_p > log_p.max() - 12.0]  # where the density is within e^-12 of its peak
    points = numpy.concatenate([heavy, finite]) if len(finite) else heavy
    lo, hi = points.min(axis=0), points.max(axis=0)
    margin = 0.15 * numpy.maximum(hi - lo, 0.2)
    (axis1, axis2), z = _grid_over(lo - margin, hi + margin, grid)
    log_p = true_log_posterior(model, x, z, labels)
    cell = (axis1[1] - axis1[0]) * (axis2[1] - axis2[0])
    # log p(z|x), normalised on the lattice: log-density levels show the tails, where a flow or a mixture
    # differs from a Gaussian, which evenly spaced density levels squeeze into the outermost band.
    log_norm = log_p - log_p.max()
    normaliser = log_p.max() + numpy.log(numpy.exp(log_norm).sum() * cell)  # log ∫ p(x|z) p(z) dz, lattice
    log_density = (log_p - normaliser).reshape(grid, grid)
    top = log_density.max()
    levels = numpy.linspace(top - 12.0, top, 13)  # the densest e^12 of the range, one level per nat
    inside = coverage(log_density, cell, true_log_posterior(model, x, finite, labels) - normaliser)

    figure = _figure(6.5, 5.5)
    ax = figure.add_subplot()
    filled = ax.contourf(axis1, axis2, numpy.maximum(log_density, top - 12.0), levels=levels, cmap="Blues")
    figure.colorbar(filled, ax=ax, label="true posterior log-density log p(z|x), nats")
    if parts is None:
        ax.scatter(
            samples[:, 0],
            samples[:, 1],
            s=2,
            alpha=0.35,
            color="tab:red",
            label=f"{n_samples} samples of q(z|x)",
        )
    else:  # one colour per part (a mixture's component), so the components can be told apart
        for part in numpy.unique(parts):
            drawn = samples[parts == part]
            ax.scatter(
                drawn[:, 0],
                drawn[:, 1],
                s=2,
                alpha=0.45,
                color=f"C{3 + int(part) % 7}",
                label=f"q(z|x), component {int(part) + 1}: {len(drawn)} samples",
            )
    ax.set_xlim(axis1[0], axis1[-1])
    ax.set_ylim(axis2[0], axis2[-1])
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")
    ax.legend(loc="upper right", markerscale=4)
    where = ", ".join(f"{v:.2f}" for v in x[0][:4]) + (", …" if x.shape[1] > 4 else "")
    ax.set_title(
        f"{model.name}: true p(z|x) (contours) vs {model.posterior_description} (dots)\nat x = ({where}); "
        f"{inside:.0%} of q's samples lie in p(z|x)'s 99% region",
        fontsize="medium",
    )
    figure.tight_layout()
    return _save(figure, path)


# ----------------------------------------------------------------------------------------------------------
# Everything for one run
# ----------------------------------------------------------------------------------------------------------


def plot_run(model, train, test, out_dir, rng, metrics_rows=None):
    """Write every figure that applies to ``model`` and its data into ``out_dir``; return their paths.

    ``train`` and ``test`` carry ``.x``, ``.labels`` (or None), ``.image_shape`` (None for 2-D toy data)
    and ``.n_classes``; the figures use the test split (the posterior picture one test point), and ``train``
    supplies the image shape if the test split lacks it. What is drawn:

    ==========================  ====================================================================
    reconstructions.png         always
    samples.png                 unconditional models with a prior (not ``latent_kind == "deterministic"``)
    class_conditional.png       conditional models (one row per class)
    latent_scatter.png          always (coloured when there are labels)
    manifold.png                z_dim == 2 and ``model.latent_kind == "gaussian"`` (a continuous latent
                                that the decoder reads directly, with a prior over it)
    interpolation.png           always (two test examples; for a conditional model of one class)
    traversal.png               images and ``model.latent_kind == "gaussian"`` (one row per dimension)
    training_curves.png         when ``metrics_rows`` has any
    kl_per_dimension.png        diagonal-Gaussian posterior, N(0, I) prior (``evaluate.has_closed_form_kl``)
    posterior.png               2-D toy data, z_dim == 2, a posterior sampler (``posterior_description``)
    the model's own figures     whatever ``model.extra_figures(out_dir, x, y, rng)`` draws (the VQ-VAE's
                                codebook_usage.png)
    ==========================  ====================================================================
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = as_generator(rng)
    image_shape = test.image_shape if test.image_shape is not None else train.image_shape
    image_shape = None if image_shape is None else tuple(image_shape)
    x = host_array(test.x)[:2000]
    labels = None if test.labels is None else numpy.asarray(test.labels)[:2000]
    conditional = model.conditional
    if conditional and labels is None:
        raise ValueError(f"plot_run: model {model.name!r} is conditional but the test split has no labels")
    y = labels if conditional else None
    z_dim = model.config.z_dim
    written = []

    written.append(reconstructions(model, x, out_dir / "reconstructions.png", y=y, image_shape=image_shape))
    if conditional:
        per_class = 8 if image_shape is not None else 100
        written.append(
            class_conditional_grid(model, rng, out_dir / "class_conditional.png", per_class, image_shape)
        )
    elif model.latent_kind != "deterministic":  # the autoencoder has no prior of its own to show
        n = 64 if image_shape is not None else 1000
        written.append(samples_grid(model, rng, out_dir / "samples.png", n=n, image_shape=image_shape))
    written.append(latent_scatter(model, x, labels, out_dir / "latent_scatter.png", y=y))
    if z_dim == 2 and model.latent_kind == "gaussian":
        label = None if not conditional else int(labels[0])
        written.append(manifold(model, out_dir / "manifold.png", image_shape=image_shape, y=label))
    pair = _interpolation_pair(len(x), labels, same_class=conditional)
    if pair is not None:
        a, b = pair
        label = int(labels[a]) if conditional else None
        strip = out_dir / "interpolation.png"
        written.append(interpolation_strip(model, x[a], x[b], strip, image_shape=image_shape, y=label))
    if image_shape is not None and model.latent_kind == "gaussian" and len(x):
        # A conditional model traverses under the first example's label, among the examples of that label.
        label = None if not conditional else int(labels[0])
        same = x if not conditional else x[labels == label]
        written.append(
            latent_traversal(model, same, out_dir / "traversal.png", image_shape=image_shape, y=label)
        )
    if metrics_rows:
        written.append(training_curves(metrics_rows, out_dir / "training_curves.png"))
    if evaluate.has_closed_form_kl(model) and len(x) >= 2:
        written.append(kl_per_dimension_bars(model, x, out_dir / "kl_per_dimension.png", y=y))
    if image_shape is None and z_dim == 2 and model.posterior_description is not None:
        label = None if not conditional else int(labels[0])
        written.append(posterior_comparison(model, x[0], out_dir / "posterior.png", rng=rng, y=label))
    written.extend(model.extra_figures(out_dir, x, y, rng))
    return written


def _interpolation_pair(n, labels, same_class):
    """Indices (a, b) of two of the n test examples to interpolate between: of different labels when there
    are labels (of the same label for a conditional model, which decodes under one y), else the first two;
    None when there is no such pair."""
    if n < 2:
        return None
    if labels is None:
        return 0, 1
    matches = numpy.flatnonzero((labels == labels[0]) if same_class else (labels != labels[0]))
    matches = matches[matches != 0]
    if len(matches):
        return 0, int(matches[0])
    return None if same_class else (0, 1)
