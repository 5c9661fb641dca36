"""Hierarchical VAE: where the information goes when there are two stochastic layers.

    python examples/hvae.py [--epochs 15] [--seed 0] [--out examples_out/hvae]
    python examples/hvae.py --quick  # a few seconds: 1,000 images, 5 epochs

The lesson. A Markovian hierarchical VAE with T = 2 layers has the generative chain
p(z_2) p(z_1|z_2) p(x|z_1) and the inference chain q(z_1|x) q(z_2|z_1). Its ELBO splits into one
reconstruction term and one KL per layer,

    ELBO = E_q[log p(x|z_1)] − E_q[log q(z_1|x) − log p(z_1|z_2)] − E_q[KL(q(z_2|z_1) ‖ N(0, I))],
                  recon                       KL_1                              KL_2

and the per-layer KLs say how many nats each layer carries. Typically KL_1 is large (z_1 must describe the
image) and the top layer carries little: its job is only to make the prior p(z_1) = ∫ p(z_1|z_2) p(z_2) dz_2
match what the encoder produces — and a top layer that collapses to the prior (KL_2 ≈ 0) is a known
failure of deep VAEs (Sønderby et al. 2016). The per-epoch table and kl_per_layer.png show both terms.
"""

from __future__ import annotations

import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import evaluate, models, plots

NAME = "hvae"
Z_DIMS = (20, 10)  # z_1 (read by the decoder), z_2 (top)


def parse_args(argv):
    parser = _common.example_parser(NAME, __doc__, epochs=15, quick="1,000 images, 5 epochs, k = 10")
    parser.add_argument("--k", type=int, default=100, help="importance samples for the NLL (default 100)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.k = 5, 10
    return args


def kl_figure(history, path):
    figure = _common.new_figure((6, 4))
    ax = figure.add_subplot()
    epochs = [row["epoch"] for row in history]
    for t in range(1, len(Z_DIMS) + 1):
        ax.plot(epochs, [row[f"test_kl_{t}"] for row in history], marker="o", label=f"KL_{t} (layer z_{t})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per test image")
    ax.set_title("Hierarchical VAE: the KL of each stochastic layer")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _common.save_figure(figure, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rng = numpy.random.default_rng(args.seed)
    start = time.perf_counter()
    train_set, test_set = _common.load_splits("mnist5k", args.quick, quick_sizes=(1000, 200))

    model = models.build("hvae", x_dim=784, z_dims=Z_DIMS, hidden=(400,), seed=args.seed)
    history = _common.fit_adam(model, train_set, test_set, args.epochs, rng, lr=1e-3)
    figures = [
        kl_figure(history, os.path.join(args.out, "kl_per_layer.png")),
        plots.samples_grid(model, rng, os.path.join(args.out, "samples.png"), n=64),
        plots.reconstructions(model, test_set.x, os.path.join(args.out, "reconstructions.png")),
    ]

    print(f"{'epoch':>5} {'KL_1 (nats)':>12} {'KL_2 (nats)':>12} {'test ELBO':>10}")
    for row in history:
        print(
            f"{row['epoch']:>5} {row['test_kl_1']:>12.2f} {row['test_kl_2']:>12.2f} {row['test_elbo']:>10.2f}"
        )
    last = history[-1]
    kls = [last[f"test_kl_{t}"] for t in range(1, len(Z_DIMS) + 1)]
    log_px = evaluate.log_likelihood(model, test_set.x, k=args.k, rng=numpy.random.default_rng(args.seed))
    numbers = {
        "recon": last["test_recon"],
        "kl_per_layer": kls,
        "elbo": last["test_elbo"],
        f"test_nll_k{args.k}": float(-log_px.mean()),
    }
    elbo, recon = last["test_elbo"], last["test_recon"]
    print(f"test ELBO = recon − KL_1 − KL_2: {elbo:.2f} = {recon:.2f} − {kls[0]:.2f} − {kls[1]:.2f} nats")
    print(f"share of the KL in the top layer: {kls[1] / max(sum(kls), 1e-12):.1%}")
    print(f"test NLL, k = {args.k}: {-log_px.mean():.2f} nats per image")
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
