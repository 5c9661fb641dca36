"""Quality check of the default `tinyvae train` run against the same network trained the same way in PyTorch.

    python benchmarks/quality_torch.py [--epochs 30] [--seeds 0,1,2] [--k 500]
    python benchmarks/quality_torch.py --data fashion-mnist --seeds 0 --k 1000 --nll-limit 1000 --only tinyvae

Both sides: the MLP VAE 784-400-20 (ReLU, one encoder layer with a 40-unit (μ, log σ²) head, Bernoulli
decoder on logits), Adam 1e-3, batch 128, on the embedded MNIST 5k split (4,500 / 500) with dynamic
binarisation for training and the fixed static binarisation of the test split — the very arrays
`tinyvae.data` gives the CLI (``--data`` picks another image dataset, e.g. the full fashion-mnist found in
/usr/share/datasets). Reports the test −ELBO (single sample, mean over the split) after the last epoch and
the k-sample importance-weighted NLL (on the first ``--nll-limit`` test images). PyTorch is an optional
peer: without it only tinyvae runs; ``--only`` runs one side, so that each process's peak memory (``/usr/bin/
time -v``) is its own.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy

import tinyvae as tv
from tinyvae import data, evaluate, train
from tinyvae.models import VAE, VAEConfig


def tinyvae_run(name, epochs, seed, k, nll_limit):
    rng = numpy.random.default_rng(seed)
    train_set = data.load_dataset(name, "train", pixels=data.default_pixels("bernoulli", "train"))
    test_set = data.load_dataset(name, "test", pixels=data.default_pixels("bernoulli", "test"))
    model = VAE(VAEConfig(x_dim=784, z_dim=20, hidden=(400,), seed=seed))
    optimizer = tv.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    history = train.fit(
        model, train_set, test_set, epochs, 128, optimizer, rng, progress=False, log=lambda _: None
    )
    seconds = time.perf_counter() - start
    nll_x = test_set.x[:nll_limit]
    nll = -evaluate.log_likelihood(model, nll_x, k=k, rng=numpy.random.default_rng(seed)).mean()
    return -history[-1]["test_elbo"], float(nll), seconds


def torch_run(name, epochs, seed, k, nll_limit):
    import torch

    torch.manual_seed(seed)
    rng = numpy.random.default_rng(seed)
    train_set = data.load_dataset(name, "train", pixels=data.default_pixels("bernoulli", "train"))
    test_x = torch.from_numpy(data.load_dataset(name, "test", pixels="binarized-static").x)
    encoder = torch.nn.Sequential(torch.nn.Linear(784, 400), torch.nn.ReLU(), torch.nn.Linear(400, 40))
    decoder = torch.nn.Sequential(torch.nn.Linear(20, 400), torch.nn.ReLU(), torch.nn.Linear(400, 784))
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)

    def log_weights(x, samples):
        mu, logvar = encoder(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(samples, *mu.shape)
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
            decoder(z), x.expand(samples, *x.shape), reduction="none"
        ).sum(-1)
        log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
        log_qz = -0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)
        return log_px + log_pz - log_qz, mu, logvar

    def negative_elbo(x):
        mu, logvar = encoder(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        nll = torch.nn.functional.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
        return nll + 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(-1)

    start = time.perf_counter()
    for _ in range(epochs):
        for x, _ in train_set.batches(128, rng):
            optimizer.zero_grad()
            loss = negative_elbo(torch.from_numpy(x)).mean()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        test_neg_elbo = float(negative_elbo(test_x).mean())
        total = []
        nll_x = test_x[:nll_limit]
        for first in range(0, len(nll_x), 50):
            batch = nll_x[first : first + 50]
            chunks = [log_weights(batch, 100)[0] for _ in range(k // 100)]
            weights = torch.cat(chunks, dim=0)
            total.append(torch.logsumexp(weights, dim=0) - math.log(weights.shape[0]))
        nll = float(-torch.cat(total).mean())
    return test_neg_elbo, nll, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--data", default="mnist5k", choices=data.IMAGE_DATASETS)
    parser.add_argument("--nll-limit", type=int, default=None, help="NLL on the first N test images only")
    parser.add_argument("--only", choices=("tinyvae", "pytorch"), help="run one implementation")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {"tinyvae": tinyvae_run}
    try:
        import torch  # noqa: F401

        runs["pytorch"] = torch_run
    except ImportError:
        print("note: PyTorch is not installed, so only tinyvae runs (it is an optional peer)")
    if args.only:
        runs = {args.only: runs[args.only]}
    print(
        f"{args.data}, {args.epochs} epochs, seeds {seeds}, NLL with k = {args.k} on "
        f"{args.nll_limit or 'all'} test images; tinyvae backend {tv.backend.current()}"
    )
    print("| implementation | seed | test −ELBO (nats) | test NLL (nats) | training seconds |")
    print("|---|---|---|---|---|")
    summary = {}
    for name, run in runs.items():
        for seed in seeds:
            neg_elbo, nll, seconds = run(args.data, args.epochs, seed, args.k, args.nll_limit)
            summary.setdefault(name, []).append((neg_elbo, nll))
            print(f"| {name} | {seed} | {neg_elbo:.2f} | {nll:.2f} | {seconds:.1f} |")
    for name, values in summary.items():
        mean = numpy.mean(values, axis=0)
        print(f"| {name} | mean | {mean[0]:.2f} | {mean[1]:.2f} | |")


if __name__ == "__main__":
    main()
