"""tinyvae on CuPy against PyTorch on CUDA, on one GPU: the VAE training step, the IWAE step (k = 50), the
convolutional VAE step and the nearest-codebook search, side by side in one process (issues 19 and 15; run
by benchmarks/gpu_check.sh).

    python benchmarks/gpu_bench.py [--steps 50] [--batch-sizes 128,1024]

The networks are those of benchmarks/bench_step.py, bench_iwae.py (784-400-20, Bernoulli decoder, Adam;
PyTorch with ``Adam(fused=True)``) and bench_conv.py (issue 14's conv VAE). A GPU runs asynchronously, so
every timed call ends with a device synchronisation (``cupy.cuda.Device().synchronize()``,
``torch.cuda.synchronize()``); the implementations alternate in rounds of 5 calls after a warm-up, and the
medians in ms per call are printed as a markdown table with the ratio tinyvae / PyTorch. PyTorch is
optional (its columns say "not installed" without it); CuPy and a GPU are required.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np


def timed_rounds(calls, synchronize, steps, per_round=5):
    """{name: median ms per call} over alternating rounds of ``per_round`` calls, after 3 warm-up calls."""
    for call in calls.values():
        for _ in range(3):
            call()
        synchronize()
    times = {name: [] for name in calls}
    for _ in range(max(1, steps // per_round)):
        for name, call in calls.items():
            synchronize()
            start = time.perf_counter()
            for _ in range(per_round):
                call()
            synchronize()
            times[name].append((time.perf_counter() - start) * 1e3 / per_round)
    return {name: statistics.median(values) for name, values in times.items()}


def tinyvae_steps(batch, k, rng):
    """The tinyvae VAE and IWAE training steps on CuPy arrays (the backend is cupy)."""
    import cupy

    import tinyvae as tv
    from tinyvae import models
    from tinyvae.models import IWAE, VAE, IWAEConfig, VAEConfig

    x = cupy.asarray((rng.uniform(size=(batch, 784)) < 0.3).astype(np.float32))
    steps = {}
    for name, model in (
        ("vae", VAE(VAEConfig(x_dim=784, z_dim=20, hidden=(400,), seed=0))),
        ("iwae", IWAE(IWAEConfig(x_dim=784, z_dim=20, hidden=(400,), k=k, seed=0))),
    ):
        optimizer = tv.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad()
            model.loss(x, rng).loss.backward()
            optimizer.step()

        steps[name] = step
    conv = models.build("vae", x_dim=784, z_dim=20, arch="conv", seed=0)
    conv_optimizer = tv.optim.Adam(conv.parameters(), lr=1e-3)

    def conv_step():
        conv_optimizer.zero_grad()
        conv.loss(x, rng).loss.backward()
        conv_optimizer.step()

    steps["conv"] = conv_step
    return steps


def torch_steps(batch, k):
    """The same two steps in PyTorch on CUDA, or {} without a CUDA PyTorch."""
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {}
    device = torch.device("cuda")
    torch.manual_seed(0)
    x = (torch.rand(batch, 784, device=device) < 0.3).float()

    def networks():
        encoder = torch.nn.Sequential(torch.nn.Linear(784, 400), torch.nn.ReLU(), torch.nn.Linear(400, 40))
        decoder = torch.nn.Sequential(torch.nn.Linear(20, 400), torch.nn.ReLU(), torch.nn.Linear(400, 784))
        encoder, decoder = encoder.to(device), decoder.to(device)
        optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3, fused=True)
        return encoder, decoder, optimizer

    def bound(encoder, decoder, samples):
        mu, logvar = encoder(x).chunk(2, dim=-1)
        eps = torch.randn(samples, *mu.shape, device=device)
        z = mu + torch.exp(0.5 * logvar) * eps
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
            decoder(z), x.expand(samples, *x.shape), reduction="none"
        ).sum(-1)
        log_w = log_px - 0.5 * (z * z).sum(-1) + 0.5 * (eps * eps + logvar).sum(-1)  # 2π terms cancel
        return torch.logsumexp(log_w, dim=0) - math.log(samples)

    def vae_bound(encoder, decoder):  # one sample with the closed-form KL, as tinyvae's VAE
        mu, logvar = encoder(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(
            -1
        )
        return log_px - 0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum(-1)

    steps = {}
    for name, objective in (("vae", vae_bound), ("iwae", lambda e, d: bound(e, d, k))):
        encoder, decoder, optimizer = networks()

        def step(encoder=encoder, decoder=decoder, optimizer=optimizer, objective=objective):
            optimizer.zero_grad(set_to_none=True)
            (-objective(encoder, decoder).mean()).backward()
            optimizer.step()

        steps[name] = step
    nn = torch.nn
    encoder = nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(),
        nn.Linear(3136, 40),
    ).to(device)  # fmt: skip
    decoder = nn.Sequential(
        nn.Linear(20, 3136), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1),
        nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1),
    ).to(device)  # fmt: skip
    conv_optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3, fused=True)
    images = x.view(batch, 1, 28, 28)

    def conv_step():
        conv_optimizer.zero_grad(set_to_none=True)
        mu, logvar = encoder(images).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = decoder(z).view(batch, 784)
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        (0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum(-1) - log_px).mean().backward()
        conv_optimizer.step()

    steps["conv"] = conv_step
    return steps


def codebook_calls(rng, n=65536, codes=512, dim=64):
    """The nearest-codebook search of F.vector_quantize (tinyvae's CuPy kernel) and torch.cdist + argmin."""
    import cupy
    from tinyvae.kernels import codebook

    z = rng.standard_normal((n, dim)).astype(np.float32)
    book = rng.standard_normal((codes, dim)).astype(np.float32)
    z_gpu, book_gpu = cupy.asarray(z), cupy.asarray(book)
    calls = {"tinyvae codebook": lambda: codebook.nearest_code_cupy(z_gpu, book_gpu)}
    try:
        import torch

        if torch.cuda.is_available():
            tz, tb = torch.from_numpy(z).cuda(), torch.from_numpy(book).cuda()
            calls["torch codebook"] = lambda: torch.cdist(tz, tb).argmin(dim=1)
    except ImportError:
        pass
    return calls, (n, codes, dim)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed calls per implementation (default 50)")
    parser.add_argument("--batch-sizes", default="128,1024", help="comma-separated batch sizes")
    parser.add_argument("--k", type=int, default=50, help="IWAE samples (default 50)")
    args = parser.parse_args()

    import cupy

    import tinyvae as tv

    tv.backend.use("cupy")

    def synchronize():
        cupy.cuda.Device().synchronize()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
        except ImportError:
            pass

    rng = np.random.default_rng(0)
    print(f"device: {tv.backend.info()['reason']}")
    print("| step | batch | tinyvae (CuPy) ms | PyTorch (CUDA) ms | tinyvae / PyTorch |")
    print("|---|---|---|---|---|")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        ours, theirs = tinyvae_steps(batch, args.k, rng), torch_steps(batch, args.k)
        calls = {f"tinyvae {name}": step for name, step in ours.items()}
        calls.update({f"torch {name}": step for name, step in theirs.items()})
        medians = timed_rounds(calls, synchronize, args.steps)
        for name in ours:
            mine, peer = medians[f"tinyvae {name}"], medians.get(f"torch {name}")
            label = {"vae": "vae", "conv": "conv vae"}.get(name, f"iwae k={args.k}")
            peer_text, ratio = (
                ("not installed", "–") if peer is None else (f"{peer:.2f}", f"{mine / peer:.2f}×")
            )
            print(f"| {label} | {batch} | {mine:.2f} | {peer_text} | {ratio} |")
    calls, (n, codes, dim) = codebook_calls(rng)
    medians = timed_rounds(calls, synchronize, args.steps)
    mine, peer = medians["tinyvae codebook"], medians.get("torch codebook")
    peer_text, ratio = ("not installed", "–") if peer is None else (f"{peer:.2f}", f"{mine / peer:.2f}×")
    print(f"| codebook search {n} × {codes} × {dim} | – | {mine:.2f} | {peer_text} | {ratio} |")


if __name__ == "__main__":
    main()
