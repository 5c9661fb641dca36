"""A first run: train a small VAE on a 2-D ring of eight Gaussians and watch the negative ELBO fall.

    python -m tinyvae.demo [--epochs 100] [--seed 0]

Every piece is the library's own: the encoder and decoder are ``tv.nn.MLP``s, the latent sample is
``F.reparameterize``, the bound is ``F.gaussian_log_prob`` + ``F.gaussian_kl``, and Adam updates the weights
from gradients that the engine's hand-written backward passes computed. The full training command (real
MNIST, checkpoints, figures) arrives with the training issue; this demo is the engine's smoke test.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy

import tinyvae as tv
import tinyvae.functional as F

NOISE_STD = 0.1  # the decoder's fixed standard deviation, equal to the data's own noise around the ring


def ring_centres(modes=8, radius=2.0):
    angles = 2 * math.pi * numpy.arange(modes) / modes
    return radius * numpy.stack([numpy.cos(angles), numpy.sin(angles)], axis=1)  # (modes, 2)


def ring_of_gaussians(n, rng, std=NOISE_STD):
    """``n`` points from an equal mixture of N(c_k, std² I) with centres c_k on a circle; (n, 2) float32."""
    centres = ring_centres()
    return (centres[rng.integers(len(centres), size=n)] + std * rng.standard_normal((n, 2))).astype(
        numpy.float32
    )


def true_negative_log_likelihood(x, std=NOISE_STD):
    """Mean −log p(x) under the data's own mixture density: the best any model can score (in nats)."""
    centres = ring_centres()
    sq_dist = ((x[:, None, :] - centres[None]) ** 2).sum(axis=-1)  # (n, modes)
    log_components = -0.5 * sq_dist / std**2 - math.log(2 * math.pi * std**2) - math.log(len(centres))
    return float(-F.logsumexp(tv.Tensor(log_components.astype(numpy.float64))).data.mean())


class RingVAE(tv.nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)), p(z) = N(0, I), p(x|z) = N(f(z), NOISE_STD² I)."""

    def __init__(self, z_dim=2, hidden=64, rng=None):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = tv.nn.MLP([2, hidden, hidden, 2 * z_dim], activation="tanh", rng=rng)
        self.decoder = tv.nn.MLP([z_dim, hidden, hidden, 2], activation="tanh", rng=rng)

    def negative_elbo(self, x, eps):
        """−ELBO = −E_q[log p(x|z)] + KL(q(z|x) ‖ p(z)), one reparameterised sample, averaged over x."""
        stats = self.encoder(x)  # (B, 2Z)
        mu, logvar = stats[:, : self.z_dim], stats[:, self.z_dim :]  # (B, Z) each
        z = F.reparameterize(mu, logvar, eps)  # (B, Z)
        log_px = F.gaussian_log_prob(x, self.decoder(z), 2 * math.log(NOISE_STD)).sum(axis=-1)  # (B,)
        kl = F.gaussian_kl(mu, logvar)  # (B,)
        return (kl - log_px).mean(), kl.mean()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        parser.error("--epochs and --batch-size must be >= 1 and --lr > 0")

    rng = numpy.random.default_rng(args.seed)
    train = ring_of_gaussians(4096, rng)
    model = RingVAE(rng=rng)
    optimizer = tv.optim.Adam(model.parameters(), lr=args.lr)
    info = tv.backend.info()
    print(f"tinyvae {tv.__version__} | backend {info['backend']} | ring of 8 Gaussians, {len(train)} points")
    print(f"{'epoch':>5}  {'-ELBO (nats)':>12}  {'KL':>7}  {'seconds':>7}")
    history = []
    for epoch in range(1, args.epochs + 1):
        start, total, total_kl = time.perf_counter(), 0.0, 0.0
        order = rng.permutation(len(train))
        for first in range(0, len(train), args.batch_size):
            x = train[order[first : first + args.batch_size]]
            eps = rng.standard_normal((len(x), model.z_dim)).astype(numpy.float32)
            optimizer.zero_grad()
            loss, kl = model.negative_elbo(tv.Tensor(x), eps)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
            total_kl += kl.item() * len(x)
        history.append(total / len(train))
        seconds = time.perf_counter() - start
        print(f"{epoch:>5}  {history[-1]:>12.3f}  {total_kl / len(train):>7.3f}  {seconds:>7.2f}")
    print(f"negative ELBO went from {history[0]:.3f} to {history[-1]:.3f} nats per point")
    print(
        f"(the data's true density scores {true_negative_log_likelihood(train):.3f} nats: the ELBO is a "
        "lower bound on log p(x), so -ELBO can approach that number but never beat it)"
    )
    return history


if __name__ == "__main__":
    main()
