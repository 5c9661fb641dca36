"""A mixture-of-Gaussians posterior: when the true p(z|x) is not one Gaussian blob, let q(z|x) be several.

    python examples/mixture_posterior.py [--epochs 30] [--components 4] [--seed 0]
    python examples/mixture_posterior.py --quick  # a few seconds: 10,000 points, 20 epochs

The lesson. The ELBO falls short of log p(x) by exactly KL(q(z|x) ‖ p(z|x)). With a diagonal-Gaussian
q(z|x), that gap is large wherever the true posterior is curved, skewed or has several modes — and with a
2-D latent we can *see* it: posterior_*.png draws the true p(z|x) ∝ p(x|z) p(z) on a grid (contours)
with samples of q(z|x) on top (dots). Here a Gaussian VAE and a VAE whose q(z|x) is a mixture of K
Gaussians (its KL estimated by Monte Carlo through logsumexp) are trained alike on the 2-D "ring of eight
Gaussians" toy, and their test ELBO, importance-sampled log p(x) and gap log p(x) − ELBO are compared.
Expect the mixture to close part of the gap; how much depends on how non-Gaussian p(z|x) turned out.
"""

from __future__ import annotations

import os
import time

import _common  # examples/_common.py: command line, data, figures, report

from tinyvae import models

NAME = "mixture_posterior"
TOY = "ring"


def parse_args(argv):
    parser = _common.example_parser(
        NAME, __doc__, epochs=30, quick="10,000 points, 20 epochs, k = 20", per_model=True
    )
    parser.add_argument("--components", type=int, default=4, help="K, Gaussians in q(z|x) (default 4)")
    parser.add_argument("--k", type=int, default=500, help="importance samples for log p(x) (default 500)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.k = 20, 20
    return args


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    # (N, 2) real-valued points: continuous, for the Gaussian decoder
    train_set, test_set = _common.load_splits(
        TOY, args.quick, quick_sizes=(None, 200), full_sizes=(None, 1000), likelihood="gaussian"
    )
    # Same networks for both; the decoder learns its noise variance (a fixed σ = 1 would blur the ring).
    common = dict(
        x_dim=2, z_dim=2, hidden=(64, 64), likelihood="gaussian", gaussian_logvar=None, seed=args.seed
    )
    contenders = {
        "gaussian": models.build("vae", **common),
        "posterior": models.build("mixture", components=args.components, **common),
    }

    labels = {"gaussian": "diagonal Gaussian", "posterior": f"mixture of {args.components}"}
    numbers, figures = _common.compare_posteriors(contenders, labels, train_set, test_set, args)
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
