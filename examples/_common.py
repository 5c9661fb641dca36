"""Plumbing shared by the scripts in examples/: the command line, loading the splits, the training call,
drawing a figure without pyplot, and the closing report. Nothing here teaches; each example keeps its
lesson in its own file and imports this one as ``import _common`` (``python examples/x.py`` puts
examples/ on sys.path; the leading underscore keeps tests/test_examples.py from running it as an example).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tinyvae import data, evaluate, figures, optim, plots, train

BATCH_SIZE = 128  # every example trains on batches of 128


def example_parser(name, doc, epochs, quick, per_model=False):
    """An ArgumentParser with the options every example has: --epochs, --seed, --out and --quick.

    ``doc`` is the script's docstring (its first line describes the script); ``epochs`` the default number
    of epochs, ``per_model`` says whether each of several models gets that many; ``quick`` describes the
    --quick run in its help ("500 images, 1 epoch"). The script adds its own options to the parser and
    applies the --quick settings itself after parsing.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    what = "training epochs per model" if per_model else "training epochs"
    parser.add_argument("--epochs", type=int, default=epochs, help=f"{what} (default {epochs})")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights, batches and noise")
    parser.add_argument("--out", default=os.path.join("examples_out", name), help="where the figures go")
    parser.add_argument("--quick", action="store_true", help=f"a tiny run ({quick})")
    return parser


def load_splits(name, quick, quick_sizes, full_sizes=(None, None), likelihood="bernoulli"):
    """The train and test splits of dataset ``name``, with the pixels a ``likelihood`` decoder should see
    (:func:`tinyvae.data.default_pixels`). ``quick_sizes`` and ``full_sizes`` are (n_train, n_test) for a
    --quick run and a full one; None keeps the whole split.
    """
    n_train, n_test = quick_sizes if quick else full_sizes
    train_pixels = data.default_pixels(likelihood, "train", name)
    test_pixels = data.default_pixels(likelihood, "test", name)
    train_set = data.load_dataset(name, "train", pixels=train_pixels, n=n_train)
    test_set = data.load_dataset(name, "test", pixels=test_pixels, n=n_test)
    return train_set, test_set


FITS = []  # what each training call of this run measured (see record_fit); report() hands it on


def reconstruction_error(model, test_set, n=200):
    """Mean squared difference between the first ``n`` test examples and their reconstructions: how much
    a model has learned, compared before and after training (an untrained decoder gives ~0.1 on MNIST)."""
    x = test_set.x[:n]
    y = test_set.labels[:n] if model.conditional else None
    return float(((numpy.asarray(model.reconstruct(x, y)) - x) ** 2).mean())


def record_fit(model, test_set, error_before, measure=reconstruction_error):
    """Note that ``model`` trained: its error by ``measure`` (default the reconstruction error) before and
    now (every lesson's figures must show a learned model, so the tests check the error fell, in --quick
    mode too)."""
    FITS.append(
        {
            "model": model.name,
            "error_untrained": error_before,
            "error_trained": measure(model, test_set),
        }
    )


def fit_adam(model, train_set, test_set, epochs, rng, lr, measure=reconstruction_error):
    """Train ``model`` for ``epochs`` epochs with a fresh Adam at learning rate ``lr``, batches of 128, one
    printed line per epoch (no progress bar); returns the history (one dict per epoch). The error by
    ``measure(model, test_set)`` before and after (default the reconstruction error; smaller is better) goes
    to :data:`FITS`."""
    before = measure(model, test_set)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    history = train.fit(model, train_set, test_set, epochs, BATCH_SIZE, optimizer, rng, progress=False)
    record_fit(model, test_set, before, measure)
    return history


def new_figure(figsize):
    """A Matplotlib Figure at 100 dpi drawn by the Agg canvas: no pyplot, no display needed."""
    figure = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path):
    """Lay ``figure`` out and write it to ``path`` as a PNG (titles wrapped to their axes, written
    atomically: :func:`tinyvae.figures.save_png`); returns ``path``."""
    figures.save_png(figure, path)
    return path


def report(args, numbers, figures, start):
    """Print where the figures went and how long the run took (``start`` from time.perf_counter());
    returns what every example's main returns: ``{"numbers": numbers, "figures": [paths]}``."""
    print(f"figures in {args.out}: {', '.join(os.path.basename(p) for p in figures)}")
    print(f"took {time.perf_counter() - start:.1f} s")
    fits = list(FITS)
    FITS.clear()
    return {"numbers": numbers, "figures": [str(p) for p in figures], "fits": fits}


def compare_posteriors(contenders, labels, train_set, test_set, args, lr=3e-3):
    """Train each model of ``contenders`` ({key: model}) the same way on a 2-D toy, report its test ELBO, its
    k-sample log p(x) and the gap between them, and draw the true posterior against q(z|x) at two test
    points. ``labels`` ({key: text}) names each posterior family in the table. Returns (numbers, figures)."""
    numbers, figures = {}, []
    points = test_set.x[:2]  # the two test points whose posteriors are drawn
    for name, model in contenders.items():
        print(f"--- {model.name}")
        rng = numpy.random.default_rng(args.seed)
        history = fit_adam(model, train_set, test_set, args.epochs, rng, lr=lr)
        log_px = evaluate.log_likelihood(model, test_set.x, k=args.k, rng=numpy.random.default_rng(args.seed))
        numbers[f"elbo_{name}"] = history[-1]["test_elbo"]
        numbers[f"log_px_{name}"] = float(log_px.mean())
        numbers[f"gap_{name}"] = numbers[f"log_px_{name}"] - numbers[f"elbo_{name}"]
        for i, point in enumerate(points):
            path = os.path.join(args.out, f"posterior_{model.name}_{i}.png")
            figures.append(
                plots.posterior_comparison(model, point, path, rng=numpy.random.default_rng(args.seed))
            )

    print(f"\n{'q(z|x)':>22} {'test ELBO':>10} {f'log p(x), k={args.k}':>16} {'gap (nats)':>11}")
    for name in contenders:
        print(
            f"{labels[name]:>22} {numbers[f'elbo_{name}']:>10.3f} {numbers[f'log_px_{name}']:>16.3f}"
            f" {numbers[f'gap_{name}']:>11.3f}"
        )
    print("gap = log p(x) − ELBO ≈ E_x KL(q(z|x) ‖ p(z|x)), nats per point; the figures show where it is")
    return numbers, figures
