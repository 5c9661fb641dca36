"""Batched matmuls ``(…, M, K) @ (…, K, N)`` as tinyvae uses them, side by side in one run, float32:

* IWAE's decoder on K = 50 samples × batch 128 with shared weights: (50, 128, 20) @ (20, 400) and
  (50, 128, 400) @ (400, 784), plus the weight gradient of the second, Σ_k h_kᵀ g_k. NumPy matmul on the
  3-D array against one 2-D GEMM on the array reshaped to (50·128, K) (a free view of a C-order array).
* Per-example products (a flow or a full-covariance posterior: a different small matrix per example):
  (128, 20, 20) @ (128, 20, 1) and (128, 20, 20) @ (128, 20, 20). NumPy matmul, einsum, and a hand-written
  numba kernel (defined here; it moves to ``kernels/`` only if it wins). These cannot be reshaped into one
  GEMM: every example has its own matrix.
* PyTorch (torch.matmul / torch.bmm / mm on the same memory) as an optional peer when installed.

    python benchmarks/bench_matmul.py [--rounds 15] [--threads 1,2]

Each thread count runs in its own process with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / NUMBA_NUM_THREADS
set before NumPy, numba and torch are imported (torch.set_num_threads too). Every implementation's result is
checked against NumPy's before timing. Median ms over rounds of back-to-back calls.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

from _machine import cpu_model, fresh_process_environment  # benchmarks/ is on sys.path when a script runs

IWAE_CASES = {  # label: (a's shape, b's shape)
    "IWAE decoder 1: (50,128,20) @ (20,400)": ((50, 128, 20), (20, 400)),
    "IWAE decoder 2: (50,128,400) @ (400,784)": ((50, 128, 400), (400, 784)),
}
PER_EXAMPLE_CASES = {
    "per-example (128,20,20) @ (128,20,1)": ((128, 20, 20), (128, 20, 1)),
    "per-example (128,20,20) @ (128,20,20)": ((128, 20, 20), (128, 20, 20)),
}


def _batched_matmul(a, b, out):
    """out[e] = a[e] @ b[e] for each example e; tiny matrices, so plain loops (no BLAS call per example)."""
    batch, rows, inner = a.shape
    cols = b.shape[2]
    for e in range(batch):
        if cols == 1:  # matrix-vector: a dot product along a contiguous row of a
            for i in range(rows):
                acc = a.dtype.type(0)
                for k in range(inner):
                    acc += a[e, i, k] * b[e, k, 0]
                out[e, i, 0] = acc
        else:  # i-k-j order: the inner loop runs along contiguous rows of b and out
            for i in range(rows):
                for j in range(cols):
                    out[e, i, j] = 0
                for k in range(inner):
                    aik = a[e, i, k]
                    for j in range(cols):
                        out[e, i, j] += aik * b[e, k, j]


def worker(rounds, threads):
    import time

    import numpy as np

    from tinyvae import backend

    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None

    def median_ms(fn, repeat):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1e3)

    def run(label, candidates, reference, calls):
        for name, fn in candidates.items():  # each result equals NumPy's before anything is timed
            got = fn()
            got = got.numpy() if hasattr(got, "numpy") else got
            np.testing.assert_allclose(got, reference, rtol=2e-4, atol=2e-4, err_msg=f"{label}: {name}")
        samples = {name: [] for name in candidates}
        for _ in range(rounds):
            for name, fn in candidates.items():
                samples[name].append(median_ms(fn, calls))
        results[label] = {name: float(np.median(t)) for name, t in samples.items()}

    rng = np.random.default_rng(0)
    results = {}
    for label, (shape_a, shape_b) in IWAE_CASES.items():
        a = rng.standard_normal(shape_a).astype(np.float32)
        w = rng.standard_normal(shape_b).astype(np.float32)
        candidates = {
            "numpy.matmul 3-D": lambda a=a, w=w: np.matmul(a, w),
            "reshape → one 2-D GEMM": lambda a=a, w=w: (a.reshape(-1, a.shape[-1]) @ w).reshape(
                *a.shape[:-1], w.shape[1]
            ),
        }
        if torch is not None:
            ta, tw = torch.from_numpy(a), torch.from_numpy(w)
            candidates["torch.matmul 3-D"] = lambda ta=ta, tw=tw: torch.matmul(ta, tw)
        run(label, candidates, np.matmul(a, w), calls=5)

    # Weight gradient of decoder 2: Σ_k h_kᵀ g_k over the 50 samples, (400, 784).
    h = rng.standard_normal((50, 128, 400)).astype(np.float32)
    g = rng.standard_normal((50, 128, 784)).astype(np.float32)
    candidates = {
        "numpy.matmul 3-D then sum": lambda: np.matmul(h.transpose(0, 2, 1), g).sum(axis=0),
        "reshape → one 2-D GEMM": lambda: h.reshape(-1, 400).T @ g.reshape(-1, 784),
    }
    if torch is not None:
        th, tg = torch.from_numpy(h), torch.from_numpy(g)
        candidates["torch mm on reshaped"] = lambda: th.reshape(-1, 400).T @ tg.reshape(-1, 784)
    run(
        "IWAE decoder 2 weight grad: Σ_k (128,400)ᵀ @ (128,784)",
        candidates,
        h.reshape(-1, 400).T @ g.reshape(-1, 784),
        5,
    )

    numba = backend.load_numba()
    kernel = numba.njit(
        ["void(float32[:, :, ::1], float32[:, :, ::1], float32[:, :, ::1])"],
        cache=True,
        fastmath={"reassoc", "contract"},
    )(_batched_matmul)
    for label, (shape_a, shape_b) in PER_EXAMPLE_CASES.items():
        a = rng.standard_normal(shape_a).astype(np.float32)
        b = rng.standard_normal(shape_b).astype(np.float32)

        def numba_matmul(a=a, b=b):
            out = np.empty((a.shape[0], a.shape[1], b.shape[2]), np.float32)
            kernel(a, b, out)
            return out

        candidates = {
            "numpy.matmul": lambda a=a, b=b: np.matmul(a, b),
            "numpy.einsum": lambda a=a, b=b: np.einsum("eik,ekj->eij", a, b),
            "numba loops (serial)": numba_matmul,
        }
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            candidates["torch.bmm"] = lambda ta=ta, tb=tb: torch.bmm(ta, tb)
        run(label, candidates, np.matmul(a, b), calls=50)
    print(json.dumps({"results": results, "torch": torch.__version__ if torch is not None else None}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.rounds, args.worker)
        return

    by_threads, torch_version = {}, None
    for threads in [int(t) for t in args.threads.split(",")]:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
        env = fresh_process_environment(env)
        env["NUMBA_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        command = [sys.executable, __file__, "--worker", str(threads), "--rounds", str(args.rounds)]
        out = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
        by_threads[threads], torch_version = out["results"], out["torch"]

    import numpy

    lines = [
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs; NumPy {numpy.__version__}; "
        f"torch {torch_version or 'not installed'}; date {datetime.date.today()}; "
        f"command `python benchmarks/bench_matmul.py --rounds {args.rounds}`.",
        "",
        "| product | threads | implementation | median ms | / NumPy matmul |",
        "|---|---|---|---|---|",
    ]
    for threads, results in by_threads.items():
        for label, times in results.items():
            baseline = next(iter(times.values()))
            for name, ms in times.items():
                lines.append(f"| {label} | {threads} | {name} | {ms:.4f} | {ms / baseline:.2f}× |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
