"""VQ-VAE: a discrete code, how much of the codebook it uses, and two ways to learn the codebook.

    python examples/vqvae.py [--epochs 8] [--codebook-size 32] [--seed 0] [--out examples_out/vqvae]
    python examples/vqvae.py --quick  # a few seconds: 1,000 images, 5 epochs

The lesson. A VQ-VAE (van den Oord et al. 2017) replaces the Gaussian latent with the nearest of K codebook
vectors: each image here becomes L = 4 code indices out of K = 32, i.e. at most 4 log 32 ≈ 13.9 nats of
information. Its loss (eq. 3) is −log p(x|z_q) + ‖sg[z_e] − e‖² + β ‖z_e − sg[e]‖²; the gradient reaches the
encoder through the straight-through estimator. Two ways of moving the codebook are compared:

* the codebook loss ‖sg[z_e] − e‖² (a gradient step on the codes, as in the paper's eq. 3), and
* exponential moving averages of the encoder outputs assigned to each code (Appendix A.1), no gradient.

What to watch: the codebook *perplexity* exp(H) of the code frequencies (K when every code is used
equally, 1 when one code takes everything — codebook collapse) and the number of codes used, per epoch,
next to the reconstruction term. Both variants here start from k-means++ seeding and restart dead codes,
the library's defaults; run with --no-tricks to switch both off and watch usage fall.
"""

from __future__ import annotations

import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import evaluate, models, optim, plots, train

NAME = "vqvae"
VARIANTS = {"loss": False, "ema": True}  # name → VQVAEConfig.ema


def parse_args(argv):
    parser = _common.example_parser(NAME, __doc__, epochs=8, quick="1,000 images, 5 epochs", per_model=True)
    parser.add_argument("--codebook-size", type=int, default=32, help="K, number of codes (default 32)")
    parser.add_argument("--no-tricks", action="store_true", help="no k-means++ seeding, no dead-code restart")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 5
    return args


def usage_figure(traces, k, path):
    figure = _common.new_figure((6, 4))
    ax = figure.add_subplot()
    for name, values in traces.items():
        ax.plot(numpy.arange(1, len(values) + 1), values, marker="o", label=f"codebook by {name}")
    ax.axhline(k, color="0.5", linestyle="--", label=f"K = {k} (uniform use)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test codebook perplexity exp(H)")
    ax.set_title("VQ-VAE codebook usage: codebook loss vs EMA updates")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _common.save_figure(figure, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    train_set, test_set = _common.load_splits("mnist5k", args.quick, quick_sizes=(1000, 200))

    traces, figures, numbers = {}, [], {"codebook_size": args.codebook_size}
    for name, ema in VARIANTS.items():
        rng = numpy.random.default_rng(args.seed)
        model = models.build(
            "vqvae",
            x_dim=784,
            z_dim=8,
            latent_vectors=4,
            hidden=(400,),
            codebook_size=args.codebook_size,
            ema=ema,
            kmeans_init=not args.no_tricks,
            dead_code_restart=not args.no_tricks,
            seed=args.seed,
        )
        optimizer = optim.Adam(model.parameters(), lr=1e-3)
        before = _common.reconstruction_error(model, test_set)
        print(f"--- codebook learned by {name}")
        history, traces[name] = [], []
        for epoch in range(1, args.epochs + 1):  # one epoch at a time, to measure usage after each
            history = train.fit(
                model,
                train_set,
                test_set,
                epoch,
                128,
                optimizer,
                rng,
                progress=False,
                start_epoch=epoch - 1,
                history=history,
            )
            traces[name].append(evaluate.codebook_usage(model, test_set.x)["perplexity"])
        _common.record_fit(model, test_set, before)
        usage = evaluate.codebook_usage(model, test_set.x)
        numbers[f"perplexity_{name}"] = usage["perplexity"]
        numbers[f"codes_used_{name}"] = usage["codes_used"]
        numbers[f"test_recon_{name}"] = -history[-1]["test_recon"]
        figures.append(
            plots.codebook_usage_hist(model, test_set.x, os.path.join(args.out, f"codebook_usage_{name}.png"))
        )
        figures.append(
            plots.reconstructions(model, test_set.x, os.path.join(args.out, f"reconstructions_{name}.png"))
        )
    figures.append(usage_figure(traces, args.codebook_size, os.path.join(args.out, "perplexity.png")))

    print(f"\n{'codebook by':>12} {'perplexity':>11} {'codes used':>11} {'recon (nats)':>13}")
    for name in VARIANTS:
        used = f"{numbers[f'codes_used_{name}']}/{args.codebook_size}"
        perplexity, recon = numbers[f"perplexity_{name}"], numbers[f"test_recon_{name}"]
        print(f"{name:>12} {perplexity:>11.1f} {used:>11} {recon:>13.2f}")
    print(
        "perplexity per epoch: "
        + "; ".join(f"{n}: " + ", ".join(f"{v:.1f}" for v in t) for n, t in traces.items())
    )
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
