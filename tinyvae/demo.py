"""A first run: train a small VAE on a 2-D ring of eight Gaussians and watch the negative ELBO fall.

    python -m tinyvae.demo [--epochs 100] [--seed 0] [--out DIR]

It takes the same path as ``tinyvae train --data ring`` (a :class:`tinyvae.train.RunConfig` given to
:func:`tinyvae.train.run`): a VAE whose encoder and decoder are ``tv.nn.MLP``s, its latent sample
``F.reparameterize``, its bound ``F.gaussian_log_prob`` + ``F.gaussian_kl``, and Adam updating the weights
from gradients that the engine's hand-written backward passes computed. What the demo adds is the yardstick:
the ring's true density is known, so the best score any model could reach is printed next to the VAE's.
Without ``--out`` the run goes to a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import tempfile

import numpy

import tinyvae as tv
import tinyvae.functional as F
from tinyvae import data, train

POINTS = 4096  # training points of the ring: enough for the shape, a few seconds on a laptop
# The decoder's noise fixed at the data's own (σ = 0.1, so log σ² = 2 log 0.1): the model then only has to
# learn where the ring is, and its −ELBO is directly comparable with the true density's score. tanh units
# bend smoothly round the circle.
DECODER = {"gaussian_logvar": 2 * math.log(0.1), "activation": "tanh"}


def ring_centres(modes=8, radius=2.0):
    """The centres of ``tinyvae.data.ring``'s components: ``modes`` points evenly spaced on a circle."""
    angles = 2 * math.pi * numpy.arange(modes) / modes
    return radius * numpy.stack([numpy.cos(angles), numpy.sin(angles)], axis=1)  # (modes, 2)


def true_negative_log_likelihood(x, std=0.1):
    """Mean −log p(x) under the data's own mixture density (equal weights, N(c_k, std² I), the parameters
    of ``tinyvae.data.ring``): the best any model can score, in nats."""
    centres = ring_centres()
    sq_dist = ((x[:, None, :] - centres[None]) ** 2).sum(axis=-1)  # (n, modes)
    log_components = -0.5 * sq_dist / std**2 - math.log(2 * math.pi * std**2) - math.log(len(centres))
    return float(-F.logsumexp(tv.Tensor(log_components.astype(numpy.float64))).data.mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep the run directory here (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tinyvae-demo-") as scratch:
        out = args.out or str(pathlib.Path(scratch) / "ring")
        config = train.RunConfig(
            model="vae", data="ring", limit=POINTS, epochs=args.epochs, lr=args.lr, seed=args.seed, out=out,
            model_options=DECODER, progress=False, plots=args.out is not None,
        )  # fmt: skip
        try:
            config.validate()
        except train.RunConfigError as error:
            parser.error(str(error))
        train.run(config)
        rows = [json.loads(line) for line in (pathlib.Path(out) / "metrics.jsonl").read_text().splitlines()]
    history = [-row["train_elbo"] for row in rows]  # the negative ELBO per epoch, nats per point
    points = data.load_dataset("ring", "train", n=POINTS).x
    print(f"negative ELBO went from {history[0]:.3f} to {history[-1]:.3f} nats per point")
    print(
        f"(the data's true density scores {true_negative_log_likelihood(points):.3f} nats: the ELBO is a "
        "lower bound on log p(x), so -ELBO can approach that number but never beat it)"
    )
    return history


if __name__ == "__main__":
    main()
