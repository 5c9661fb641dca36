"""Data-parallel training throughput: `tinyvae train` as one process (1 and 2 threads) against `mpiexec -n 2`
(1 thread per rank), and the cost of the gradient Allreduce alone (issue 16).

    python benchmarks/bench_mpi.py [--epochs 6] [--repeats 3] [--batch-size 128] [--model M] [--data D]

Each configuration trains the same run (defaults otherwise: batch 128, Adam, no figures) in a fresh process
tree; the examples per second of a configuration are the training examples over the median seconds of its
steady epochs (epoch 1, which compiles the kernels, is dropped), median over ``--repeats`` runs, which
alternate between configurations. The Allreduce is timed in its own 2-rank job over a float32 buffer of the
model's parameter count (652,824 for the default VAE), median of 200 calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _machine import cpu_model  # benchmarks/ is on sys.path when a script runs

ALLREDUCE_CODE = """
import json, sys, time
import numpy
from mpi4py import MPI
comm = MPI.COMM_WORLD
size = int(sys.argv[1])
send, receive = numpy.ones(size, numpy.float32), numpy.empty(size, numpy.float32)
times = []
for _ in range(220):
    comm.Barrier()
    start = time.perf_counter()
    comm.Allreduce(send, receive)
    times.append(time.perf_counter() - start)
if comm.Get_rank() == 0:
    print(json.dumps(sorted(times[20:])[len(times[20:]) // 2] * 1e3))
"""


def mpiexec():
    return os.path.join(os.path.dirname(sys.executable), "mpiexec")


def environment(threads):
    return {
        **os.environ,
        "OPENBLAS_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "NUMBA_NUM_THREADS": str(threads),
    }


def train_seconds(ranks, threads, args, out):
    """Median seconds of the steady epochs of one `tinyvae train` run on ``ranks`` ranks."""
    command = [sys.executable, "-m", "tinyvae", "train", "--model", args.model, "--data", args.data]
    command += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    command += ["--no-plots", "--no-progress", "--overwrite", "--out", out]
    if ranks > 1:
        command = [mpiexec(), "-n", str(ranks), *command]
    subprocess.run(command, env=environment(threads), check=True, capture_output=True)
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as file:
        rows = [json.loads(line) for line in file]
    return statistics.median(row["seconds"] for row in rows[1:])


def parameter_count(model_name, data):
    from tinyvae import data as datasets
    from tinyvae import models

    x_dim = datasets.load_dataset(data, "test").x.shape[1]
    model = models.build(model_name, x_dim=x_dim, z_dim=20, seed=0)
    return sum(p.data.size for p in model.parameters())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="vae")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    from tinyvae import data as datasets

    examples = len(datasets.load_dataset(args.data, "train").x)
    configurations = {
        "1 process, 1 thread": (1, 1),
        "1 process, 2 threads": (1, 2),
        "2 ranks, 1 thread each": (2, 1),
    }
    seconds = {name: [] for name in configurations}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.repeats):
            for name, (ranks, threads) in configurations.items():
                out = os.path.join(scratch, f"run-{ranks}-{threads}")
                seconds[name].append(train_seconds(ranks, threads, args, out))
    size = parameter_count(args.model, args.data)
    allreduce = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, "-c", ALLREDUCE_CODE, str(size)],
        env=environment(1),
        check=True,
        capture_output=True,
        text=True,
    )
    allreduce_ms = json.loads(allreduce.stdout.strip().splitlines()[-1])
    base = statistics.median(seconds["1 process, 1 thread"])
    print(
        f"{args.model} on {args.data} ({examples} training examples, batch {args.batch_size}), "
        f"{args.epochs} epochs; {cpu_model()}"
    )
    print("| configuration | seconds per epoch (median) | examples / s | speed-up over 1 process, 1 thread |")
    print("|---|---|---|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {examples / median:,.0f} | {base / median:.2f}× |")
    steps = -(-examples // args.batch_size)
    print(
        f"\nAllreduce of {size:,} float32 ({size * 4 / 1e6:.2f} MB) on 2 ranks of this machine: "
        f"{allreduce_ms:.3f} ms (median of 200); {steps} steps per epoch → "
        f"{steps * allreduce_ms / 1e3:.3f} s of Allreduce per epoch"
    )


if __name__ == "__main__":
    main()
