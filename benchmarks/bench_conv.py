"""One training step of the convolutional VAE (``models.build("vae", x_dim=784, z_dim=20, arch="conv")``:
the ELBO with one reparameterised sample, backward, Adam) on a batch of 128 binary 28×28 images: tinyvae
against PyTorch eager for the same network (optional peer), side by side; issue 14's speed bar.

    python benchmarks/bench_conv.py [--batch 128] [--steps 60] [--threads 1,2]

The PyTorch network is the one of tinyvae/models/networks.py: Conv2d(1,32,4,2,1) → ReLU → Conv2d(32,64,4,2,1)
→ ReLU → flatten → Linear(3136, 40); Linear(20, 3136) → ReLU → view (64, 7, 7) → ConvTranspose2d(64,32,4,2,1)
→ ReLU → ConvTranspose2d(32,1,4,2,1); Bernoulli log-likelihood (binary_cross_entropy_with_logits summed per
example), analytic Gaussian KL, fused Adam. Each thread count runs in its own process with OMP_NUM_THREADS /
OPENBLAS_NUM_THREADS set before NumPy is imported; the implementations alternate in rounds of 5 steps;
medians in ms per step.
"""

from __future__ import annotations

import argparse
import json
import os

from _machine import (
    cpu_model,
    median_ms_alternating,
    print_step_rows,
    tinyvae_steps,
)  # benchmarks/ is on sys.path when a script runs


def worker(batch, steps):
    import numpy as np

    import tinyvae as tv
    from tinyvae import models

    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(batch, 784)) < 0.3).astype(np.float32)

    def make():
        model = models.build("vae", x_dim=784, z_dim=20, arch="conv", seed=0)
        return model, tv.optim.Adam(model.parameters(), lr=1e-3)

    steps_by_name = tinyvae_steps(make, x, rng)
    try:
        import torch
        from torch import nn
    except ImportError:
        nn = None
    if nn is not None:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        torch.manual_seed(0)
        encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(3136, 40),
        )
        decoder = nn.Sequential(
            nn.Linear(20, 3136),
            nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )
        torch_optimizer = torch.optim.Adam(
            [*encoder.parameters(), *decoder.parameters()], lr=1e-3, fused=True
        )
        tx = torch.from_numpy(x)
        images = tx.view(batch, 1, 28, 28)

        def torch_step():
            torch_optimizer.zero_grad(set_to_none=True)
            mu, logvar = encoder(images).chunk(2, dim=-1)  # (B, Z) each
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = decoder(z).view(batch, 784)
            recon = -torch.nn.functional.binary_cross_entropy_with_logits(logits, tx, reduction="none").sum(
                -1
            )
            kl = 0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum(-1)  # KL(N(μ, σ²) ‖ N(0, I)), closed form
            (kl - recon).mean().backward()
            torch_optimizer.step()

        steps_by_name["torch"] = torch_step
    print(json.dumps(median_ms_alternating(steps_by_name, steps)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.batch, args.steps)
        return
    print(f"Conv VAE step, batch {args.batch}, z = 20, float32; medians of {args.steps} steps; {cpu_model()}")
    print(
        "| threads | tinyvae ms | torch (fused Adam) ms | tinyvae / torch "
        "| numpy backend ms | numba / numpy backend |"
    )
    print("|---|---|---|---|---|---|")
    print_step_rows(__file__, ["--batch", args.batch, "--steps", args.steps], args.threads)


if __name__ == "__main__":
    main()
