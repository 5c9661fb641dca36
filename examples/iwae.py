"""IWAE: more importance samples give a tighter bound on log p(x).

    python examples/iwae.py [--epochs 5] [--seed 0] [--out examples_out/iwae]
    python examples/iwae.py --quick  # a few seconds: 1,000 images, 5 epochs, K = 1 and 5 only

The lesson. The importance-weighted bound of Burda et al. (2016, eq. 8),

    L_K(x) = E[ log (1/K) Σ_k p(x, z_k) / q(z_k|x) ],   z_1 … z_K ~ q(z|x),

is the ELBO for K = 1 and rises monotonically towards log p(x) as K grows (their Theorem 1). Two things
follow, and this script shows both:

1. For one trained model, L_1 ≤ L_5 ≤ L_20 ≤ … ≤ L_1000 ≈ log p(x): the same network, bounded ever more
   tightly (printed as "bound vs k", and drawn in bound_vs_k.png).
2. Training on L_K with larger K gives a model with a better log p(x) (a lower test NLL), at K times the
   decoder cost per step. Three IWAEs, K = 1 (the VAE), 5 and 20, are trained alike here on the embedded
   MNIST (a smaller 784-200-20 network so that K = 20 fits in the time).
"""

from __future__ import annotations

import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import evaluate, models, plots

NAME = "iwae"
TRAIN_K = (1, 5, 20)
EVAL_K = (1, 5, 20, 100, 1000)


def parse_args(argv):
    parser = _common.example_parser(
        NAME, __doc__, epochs=5, quick="1,000 images, 5 epochs, K = 1 and 5, k ≤ 20", per_model=True
    )
    args = parser.parse_args(argv)
    args.train_k, args.eval_k = TRAIN_K, EVAL_K
    if args.quick:
        args.epochs, args.train_k, args.eval_k = 5, (1, 5), (1, 5, 20)
    return args


def bound(model, x, k, seed):
    """Mean over x of the K-sample bound, in nats (evaluate.log_likelihood is exactly L_k, estimated once)."""
    return float(evaluate.log_likelihood(model, x, k=k, rng=numpy.random.default_rng(seed)).mean())


def bound_figure(curves, path):
    figure = _common.new_figure((6, 4))
    ax = figure.add_subplot()
    for train_k, (ks, values) in curves.items():
        ax.plot(ks, values, marker="o", label=f"trained with K = {train_k}")
    ax.set_xscale("log")
    ax.set_xlabel("k, importance samples in the bound")
    ax.set_ylabel("L_k on the test split (nats per image)")
    ax.set_title("The IWAE bound tightens as k grows (Burda et al. 2016, Thm 1)")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _common.save_figure(figure, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    train_set, test_set = _common.load_splits(
        "mnist5k", args.quick, quick_sizes=(1000, 100), full_sizes=(None, 200)
    )
    x = test_set.x

    curves, figures, numbers = {}, [], {}
    for k in args.train_k:
        rng = numpy.random.default_rng(args.seed)
        model = models.build("iwae", x_dim=784, z_dim=20, hidden=(200,), k=k, seed=args.seed)
        print(f"--- IWAE trained with K = {k}")
        tic = time.perf_counter()
        _common.fit_adam(model, train_set, test_set, args.epochs, rng, lr=1e-3)
        seconds = time.perf_counter() - tic
        values = [bound(model, x, k_eval, args.seed) for k_eval in args.eval_k]
        curves[k] = (args.eval_k, values)
        numbers[f"test_nll_k{args.eval_k[-1]}_trainK{k}"] = -values[-1]
        numbers[f"train_seconds_trainK{k}"] = seconds
        if k == args.train_k[-1]:
            numbers["bound_vs_k"] = values
            figures.append(plots.samples_grid(model, rng, os.path.join(args.out, f"samples_K{k}.png"), n=64))
    figures.append(bound_figure(curves, os.path.join(args.out, "bound_vs_k.png")))

    print(f"\nbound L_k on {len(x)} test images, nats per image (each row one trained model):")
    print(f"{'train K':>8} " + " ".join(f"{'k=' + str(k):>9}" for k in args.eval_k) + f" {'train s':>8}")
    for k, (_, values) in curves.items():
        line = " ".join(f"{v:>9.2f}" for v in values)
        print(f"{k:>8} {line} {numbers[f'train_seconds_trainK{k}']:>8.1f}")
    print(
        f"reading along a row: the bound rises with k towards log p(x); down the last column (k = "
        f"{args.eval_k[-1]}, ≈ log p(x)): training with larger K gives a higher log p(x)"
    )
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
