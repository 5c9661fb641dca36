"""Conditional VAE: tell the decoder which digit to draw, and let z carry the handwriting style.

    python examples/cvae.py [--epochs 15] [--seed 0] [--out examples_out/cvae]
    python examples/cvae.py --quick  # a few seconds: 300 images, 1 epoch

The lesson. A CVAE (Sohn et al. 2015) gives the label y to both networks: q(z|x, y) and p(x|z, y), with the
prior p(z) = N(0, I) unchanged. The ELBO is log p(x|y) ≥ E_q[log p(x|z, y)] − KL(q(z|x, y) ‖ p(z)). Since
the decoder already knows the class, the code z is free to describe *how* the digit is written (slant,
thickness), so:

* class_conditional.png: one row per class y, each a fresh z ~ N(0, I) — we choose the digit;
* style_transfer.png: one column per z, the same z decoded under every y — the same style, ten digits.

The printed "label effect" is the mean absolute pixel change when only y changes for a fixed z: a
conditional decoder that ignored its label would score 0.
"""

from __future__ import annotations

import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import models, plots

NAME = "cvae"


def parse_args(argv):
    parser = _common.example_parser(NAME, __doc__, epochs=15, quick="300 images, 1 epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 1
    return args


def style_figure(images, path):
    """images (classes, styles, 784): row = label y, column = one fixed z."""
    classes, styles = images.shape[:2]
    canvas = images.reshape(classes, styles, 28, 28).transpose(0, 2, 1, 3).reshape(classes * 28, styles * 28)
    figure = _common.new_figure((0.5 * styles + 1.5, 0.5 * classes + 1))
    ax = figure.add_subplot()
    ax.imshow(numpy.clip(canvas, 0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks(numpy.arange(classes) * 28 + 14, [f"y = {c}" for c in range(classes)])
    ax.set_xticks(numpy.arange(styles) * 28 + 14, [f"z{j + 1}" for j in range(styles)])
    ax.set_xlabel("one z per column, decoded under every label")
    ax.set_title("CVAE: same style z, different digit y")
    return _common.save_figure(figure, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rng = numpy.random.default_rng(args.seed)
    start = time.perf_counter()
    train_set, test_set = _common.load_splits("mnist5k", args.quick, quick_sizes=(300, 100))

    model = models.build("cvae", x_dim=784, z_dim=20, hidden=(400,), n_classes=10, seed=args.seed)
    history = _common.fit_adam(model, train_set, test_set, args.epochs, rng, lr=1e-3)

    styles = 8
    z = rng.standard_normal((styles, 20)).astype(numpy.float32)  # (S, Z), the same z for every class
    images = numpy.stack([model.decode(z, numpy.full(styles, c)) for c in range(10)])  # (10, S, 784)
    # Mean |Δpixel| between two different labels for the same z, averaged over all label pairs.
    diffs = numpy.abs(images[:, None] - images[None, :]).mean(axis=(2, 3))  # (10, 10)
    label_effect = float(diffs[~numpy.eye(10, dtype=bool)].mean())

    figures = [
        plots.class_conditional_grid(
            model, rng, os.path.join(args.out, "class_conditional.png"), per_class=8
        ),
        style_figure(images, os.path.join(args.out, "style_transfer.png")),
        plots.reconstructions(
            model, test_set.x, os.path.join(args.out, "reconstructions.png"), y=test_set.labels
        ),
    ]
    last = history[-1]
    numbers = {
        "test_neg_elbo": -last["test_elbo"],
        "test_kl": last["test_kl"],
        "class_distinctness": label_effect,
    }
    print(f"test −ELBO (−log p(x|y) bound): {numbers['test_neg_elbo']:.2f} nats per image")
    print(
        f"  of which KL(q(z|x,y) ‖ p(z)): {numbers['test_kl']:.2f} nats (the style; the class costs nothing)"
    )
    print(f"label effect: changing y alone moves pixels by {label_effect:.3f} on average (probability units)")
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
