"""OpenBLAS's kernel choice (tinyvae/blas_tuning.py): the matmuls of one VAE step, and the codebook GEMM,
with OpenBLAS's own choice against ``OPENBLAS_CORETYPE=Haswell``.

    python benchmarks/bench_blas_kernels.py               # 1 thread for the step, 2 for the codebook GEMM
    python benchmarks/bench_blas_kernels.py --rounds 9

"The matmuls of one step" are the eleven GEMMs of the 784-400-20 MLP VAE's forward and backward (four
forward, four weight gradients, three input gradients; float32), which is the floor no implementation of
the step can go under. Each setting runs in a fresh process (OpenBLAS reads ``OPENBLAS_CORETYPE`` when it
loads), the settings alternate round by round, and we report the median over rounds of each process's
median; the ratio is Haswell / OpenBLAS's own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SHAPES = {  # batch size -> the step's GEMMs as (rows, inner, cols)
    "step": lambda b: [
        (b, 784, 400),  # x W1
        (b, 400, 40),  # h [Wmu Wlv]
        (b, 20, 400),  # z W3
        (b, 400, 784),  # h2 W4
        (400, b, 784),  # dW4 = h2ᵀ g
        (b, 784, 400),  # dh2 = g W4ᵀ
        (20, b, 400),  # dW3 = zᵀ g
        (b, 400, 20),  # dz = g W3ᵀ
        (400, b, 40),  # d[Wmu Wlv] = hᵀ g
        (b, 40, 400),  # dh = g [Wmu Wlv]ᵀ
        (784, b, 400),  # dW1 = xᵀ g
    ]
}


def worker(args):
    import time

    import numpy as np

    from tinyvae import backend

    rng = np.random.default_rng(0)

    def median_ms(products, repeats):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for a, b in products:
                a @ b
            times.append(time.perf_counter() - start)
        return 1e3 * float(np.median(times))

    results = {}
    for batch in args.batch_sizes:
        products = [
            (rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32))
            for m, k, n in SHAPES["step"](batch)
        ]
        results[f"step matmuls, batch {batch}"] = median_ms(products, args.repeats)
    codebook = rng.standard_normal((512, 64), dtype=np.float32)
    rows = rng.standard_normal((2048, 64), dtype=np.float32)
    chunk = [(codebook, rows.T)] * 32  # the (65536, 512, 64) search's 32 chunk GEMMs
    results["codebook GEMM (65536, 512, 64)"] = median_ms(chunk, max(3, args.repeats // 20))
    print(json.dumps({"kernels": backend.openblas_kernels(), "results": results}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=100, help="timed repeats per process")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 128, 512])
    parser.add_argument("--threads", type=int, default=1, help="threads for the step's matmuls")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import numpy as np

    base = {key: value for key, value in os.environ.items() if key != "OPENBLAS_CORETYPE"}
    settings = {"OpenBLAS's own": base, "Haswell": {**base, "OPENBLAS_CORETYPE": "Haswell"}}
    medians = {name: {} for name in settings}
    kernels = {}
    for _ in range(args.rounds):
        for name, env in settings.items():
            for threads, keep in ((args.threads, "step"), (2, "codebook")):
                command = [sys.executable, __file__, "--worker", "--repeats", str(args.repeats)]
                command += ["--batch-sizes", *map(str, args.batch_sizes)]
                thread_env = {**env, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
                out = subprocess.run(command, env=thread_env, capture_output=True, text=True, check=True)
                report = json.loads(out.stdout)
                kernels[name] = report["kernels"]
                for label, ms in report["results"].items():
                    if label.startswith(keep):
                        medians[name].setdefault(f"{label}, {threads}T", []).append(ms)
    print(f"{args.rounds} rounds, fresh process per setting and round; ms (median over rounds)")
    print(f"| matmuls | {kernels[next(iter(settings))]} (OpenBLAS's own) | Haswell | Haswell / own |")
    print("|---|---|---|---|")
    own, haswell = (medians[name] for name in settings)
    for label in own:
        a, b = float(np.median(own[label])), float(np.median(haswell[label]))
        print(f"| {label} | {a:.3f} | {b:.3f} | {b / a:.2f}× |")


if __name__ == "__main__":
    main()
