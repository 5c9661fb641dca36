"""One IWAE training step (K importance samples, the bound of Burda et al. 2016 eq. 8, backward, Adam) of the
784-400-20 network on a batch of 128: tinyvae against PyTorch eager (optional peer), side by side.

    python benchmarks/bench_iwae.py [--k 50] [--batch 128] [--steps 60] [--threads 1,2]

Each thread count runs in its own process with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set before NumPy is
imported; the implementations alternate in rounds of 5 steps; medians in ms per step.
"""

from __future__ import annotations

import argparse
import json
import math
import os

from _machine import (
    median_ms_alternating,
    print_step_rows,
    tinyvae_steps,
)  # benchmarks/ is on sys.path when a script runs


def worker(k, batch, steps):
    import numpy as np

    import tinyvae as tv
    from tinyvae.models import IWAE, IWAEConfig

    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(batch, 784)) < 0.3).astype(np.float32)

    def make():
        model = IWAE(IWAEConfig(x_dim=784, z_dim=20, hidden=(400,), k=k, seed=0))
        return model, tv.optim.Adam(model.parameters(), lr=1e-3)

    steps_by_name = tinyvae_steps(make, x, rng)
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        encoder = torch.nn.Sequential(torch.nn.Linear(784, 400), torch.nn.ReLU(), torch.nn.Linear(400, 40))
        decoder = torch.nn.Sequential(torch.nn.Linear(20, 400), torch.nn.ReLU(), torch.nn.Linear(400, 784))
        params = [*encoder.parameters(), *decoder.parameters()]
        torch_optimizer = torch.optim.Adam(params, lr=1e-3, fused=True)
        tx = torch.from_numpy(x)

        def torch_step():
            torch_optimizer.zero_grad(set_to_none=True)
            mu, logvar = encoder(tx).chunk(2, dim=-1)
            std = torch.exp(0.5 * logvar)
            eps = torch.randn(k, *mu.shape)
            z = mu + std * eps
            logits = decoder(z)
            log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
                logits, tx.expand(k, *tx.shape), reduction="none"
            ).sum(-1)
            log_pz = -0.5 * (z * z).sum(-1)
            log_qz = -0.5 * (eps * eps + logvar).sum(-1)  # the 2π terms cancel between p(z) and q(z|x)
            bound = torch.logsumexp(log_px + log_pz - log_qz, dim=0) - math.log(k)
            (-bound.mean()).backward()
            torch_optimizer.step()

        steps_by_name["torch"] = torch_step
    except ImportError:
        pass
    print(json.dumps(median_ms_alternating(steps_by_name, steps)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.k, args.batch, args.steps)
        return
    print(f"IWAE step, K = {args.k}, batch {args.batch}, 784-400-20, float32; medians of {args.steps} steps")
    print(
        "| threads | tinyvae ms | torch (fused Adam) ms | tinyvae / torch "
        "| numpy backend ms | numba / numpy backend |"
    )
    print("|---|---|---|---|---|---|")
    print_step_rows(__file__, ["--k", args.k, "--batch", args.batch, "--steps", args.steps], args.threads)


if __name__ == "__main__":
    main()
