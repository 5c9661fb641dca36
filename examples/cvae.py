"""Conditional VAE: tell the decoder which digit to draw, and let z carry the handwriting style.

    python examples/cvae.py [--epochs 15] [--seed 0] [--out examples_out/cvae]
    python examples/cvae.py --quick  # a few seconds: 1,000 images, 10 epochs

The lesson. A CVAE (Sohn et al. 2015) gives the label y to both networks: q(z|x, y) and p(x|z, y), with the
prior p(z) = N(0, I) unchanged. The ELBO is log p(x|y) ≥ E_q[log p(x|z, y)] − KL(q(z|x, y) ‖ p(z)). Since
the decoder already knows the class, the code z is free to describe *how* the digit is written (slant,
thickness), so:

* class_conditional.png: one row per class y, each a fresh z ~ N(0, I) — we choose the digit;
* style_transfer.png: one column per z, the same z decoded under every y — the same style, ten digits.

Judged, not eyeballed: a digit classifier written with tinyvae (``tinyvae.evaluate.train_classifier``, about
96% on the test images) labels the class-conditional samples ("label accuracy": the fraction labelled with
the class they were drawn for) and the style-transfer columns ("style accuracy"). A decoder that ignored
its label would score 10%. The label enters both networks scaled by ``label_scale`` (5): at 1 it is too weak
beside z, the class ends up in z, and these numbers fall to about 38% and 22% (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import data, evaluate, models, plots

NAME = "cvae"


def parse_args(argv):
    parser = _common.example_parser(NAME, __doc__, epochs=15, quick="1,000 images, 10 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 10
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
    train_set, test_set = _common.load_splits("mnist5k", args.quick, quick_sizes=(1000, 100))

    model = models.build("cvae", x_dim=784, z_dim=20, hidden=(400,), n_classes=10, seed=args.seed)
    history = _common.fit_adam(model, train_set, test_set, args.epochs, rng, lr=1e-3)

    styles = 8
    z = rng.standard_normal((styles, 20)).astype(numpy.float32)  # (S, Z), the same z for every class
    images = numpy.stack([model.decode(z, numpy.full(styles, c)) for c in range(10)])  # (10, S, 784)
    # The judge: trained on every mnist5k training image, whatever the example itself trained on.
    judge = evaluate.train_classifier(data.load_dataset("mnist5k", "train", pixels="continuous"), epochs=5)
    label_accuracy, _ = evaluate.class_conditional_accuracy(model, judge, per_class=50, rng=args.seed)
    style_accuracy = float(numpy.mean([(judge.predict(images[c]) == c).mean() for c in range(10)]))

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
        "label_accuracy": label_accuracy,
        "style_accuracy": style_accuracy,
    }
    print(f"test −ELBO (−log p(x|y) bound): {numbers['test_neg_elbo']:.2f} nats per image")
    print(
        f"  of which KL(q(z|x,y) ‖ p(z)): {numbers['test_kl']:.2f} nats (the style; the class costs nothing)"
    )
    print(
        f"label accuracy: {label_accuracy:.0%} of samples drawn for class y are judged to show y (chance 10%)"
    )
    print(
        f"style accuracy: {style_accuracy:.0%} of the style-transfer digits show the label decoded with them"
    )
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
