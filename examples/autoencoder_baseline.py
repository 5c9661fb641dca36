"""The plain autoencoder next to the VAE: both reconstruct, only one of them generates.

    python examples/autoencoder_baseline.py [--epochs 15] [--seed 0] [--out DIR]
    python examples/autoencoder_baseline.py --quick  # a few seconds: 1,000 images, 5 epochs

The lesson. An autoencoder z = f(x), x̂ = g(z) trained on reconstruction alone puts its codes wherever
reconstruction is easiest; nothing ties them to N(0, I). So decoding z ~ N(0, I) lands where no training
image was encoded, and the "samples" are smudges. The VAE pays for its KL term with slightly worse
reconstructions, but its codes fill the prior, so prior samples decode to digits. Both networks here are
784-400-20 with a Bernoulli decoder, trained alike on the embedded MNIST. Printed:

* reconstruction error at the code, −log p(x | g(code)), nats per test image (lower is better): AE wins;
* the spread of the codes (per-dimension std, and the mean norm against √20 ≈ 4.47 for N(0, I));
* sample realism: the mean pixel distance from each decoded prior sample to its nearest training image
  (lower looks more like real data): the VAE wins.
"""

from __future__ import annotations

import math
import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import models, plots
from tinyvae.backend import to_host

NAME = "autoencoder_baseline"
Z_DIM = 20


def parse_args(argv):
    parser = _common.example_parser(NAME, __doc__, epochs=15, quick="1,000 images, 5 epochs", per_model=True)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 5
    return args


def bernoulli_nll(probs, x):
    """−Σ_pixels [x log p + (1 − x) log(1 − p)] per image, nats (B,)."""
    p = numpy.clip(probs.astype(numpy.float64), 1e-7, 1 - 1e-7)
    return -(x * numpy.log(p) + (1 - x) * numpy.log1p(-p)).sum(axis=1)


def nearest_distance(samples, reference):
    """For each sample, the Euclidean pixel distance to its nearest reference image; their mean."""
    sq = (samples**2).sum(1)[:, None] + (reference**2).sum(1)[None, :] - 2 * samples @ reference.T  # (S, R)
    return float(numpy.sqrt(numpy.maximum(sq.min(axis=1), 0)).mean())


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    train_set, test_set = _common.load_splits("mnist5k", args.quick, quick_sizes=(1000, 200))
    reference = train_set.x[:2000]  # grey levels of training images, for the nearest-neighbour distance

    numbers, figures = {}, []
    for name in ("ae", "vae"):
        rng = numpy.random.default_rng(args.seed)
        model = models.build(name, x_dim=784, z_dim=Z_DIM, hidden=(400,), seed=args.seed)
        print(f"--- {name}")
        _common.fit_adam(model, train_set, test_set, args.epochs, rng, lr=1e-3)
        codes = to_host(model.latent_mean(model.check_x(test_set.x))).astype(numpy.float64)  # (N, Z)
        samples = model.sample(100, numpy.random.default_rng(args.seed))  # decoded z ~ N(0, I), (100, 784)
        numbers[f"{name}_recon_nll"] = float(bernoulli_nll(model.reconstruct(test_set.x), test_set.x).mean())
        numbers[f"{name}_code_std"] = float(codes.std(axis=0).mean())
        numbers[f"{name}_code_norm"] = float(numpy.linalg.norm(codes, axis=1).mean())
        numbers[f"{name}_sample_distance"] = nearest_distance(samples.astype(numpy.float64), reference)
        figures.append(
            plots.reconstructions(model, test_set.x, os.path.join(args.out, f"reconstructions_{name}.png"))
        )
        # plot_run skips prior samples for the AE (it has no prior); we draw them on purpose, to show why.
        figures.append(
            plots.samples_grid(model, rng, os.path.join(args.out, f"prior_samples_{name}.png"), n=64)
        )
        figures.append(
            plots.latent_scatter(
                model, test_set.x, test_set.labels, os.path.join(args.out, f"latent_{name}.png")
            )
        )

    print(f"\n{'':>5} {'recon NLL (nats)':>17} {'code std':>9} {'code norm':>10} {'sample→nearest':>15}")
    for name in ("ae", "vae"):
        print(
            f"{name:>5} {numbers[f'{name}_recon_nll']:>17.2f} {numbers[f'{name}_code_std']:>9.2f}"
            f" {numbers[f'{name}_code_norm']:>10.2f} {numbers[f'{name}_sample_distance']:>15.2f}"
        )
    print(
        f"N(0, I) in {Z_DIM} dimensions: code std 1, code norm ≈ {math.sqrt(Z_DIM):.2f}; "
        "sample→nearest is the mean pixel distance of a prior sample to its nearest training image"
    )
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
