"""Benchmark the nearest-codebook search: NumPy GEMM trick vs BLAS + fused numba pass (serial and parallel)
vs faiss IndexFlatL2 (optional peer, run when ``import faiss`` works), side by side in one process.

    python benchmarks/bench_codebook.py                 # both sizes in RESULTS.md, 2 threads, float32
    python benchmarks/bench_codebook.py --threads 1 --rounds 15
    python benchmarks/bench_codebook.py --separate-processes   # the bar: numba vs faiss, own processes

Timings are interleaved (one call of each implementation per round) so that load from other processes hits
all of them alike; we print the median and the minimum over rounds. Extra memory is the tracemalloc peak of
one call minus its two outputs: NumPy's allocations (hence everything the NumPy and numba versions allocate)
are visible to tracemalloc; faiss's C++ allocations are not, so its memory is not measured here.

In one process faiss's OpenMP pool and OpenBLAS's compete, which slows faiss down; ``--separate-processes``
times numba and faiss each in a fresh process, alternating processes round by round (the ratio for the bar).
faiss runs twice there, with OpenBLAS's own kernel choice and with the one the ``tinyvae`` command makes
(tinyvae/blas_tuning.py), and the faster of the two is the peer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

SIZES = [(65536, 512, 64), (8192, 4096, 256)]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS / OpenMP / numba threads")
    parser.add_argument("--rounds", type=int, default=11, help="timed rounds per size (after one warm-up)")
    parser.add_argument(
        "--chunk-mb", type=float, nargs="*", default=[], help="extra numba chunk sizes to try"
    )
    parser.add_argument(
        "--no-compile-timing", action="store_true", help="skip the fresh-process compile timing"
    )
    parser.add_argument(
        "--parallel-pass",
        action="store_true",
        help="also time a parallel=True build of the fused pass (its idle OpenMP threads slow faiss down, "
        "so it is off by default and best run on its own)",
    )
    parser.add_argument(
        "--separate-processes", action="store_true", help="numba vs faiss, each timed in its own process"
    )
    parser.add_argument("--calls", type=int, default=5, help="timed calls per process (--separate-processes)")
    parser.add_argument("--worker", choices=["numba", "faiss"], help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()
# Thread counts must be fixed before NumPy (OpenBLAS), numba or faiss start their pools.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
from tinyvae.kernels import codebook as cb  # noqa: E402

try:
    import faiss
except ImportError:
    faiss = None


def faiss_search(z, codebook):
    index = faiss.IndexFlatL2(codebook.shape[1])
    index.add(codebook)
    sq_dist, indices = index.search(z, 1)
    return indices[:, 0], sq_dist[:, 0]


def extra_bytes(fn, z, codebook) -> int:
    """tracemalloc peak of one call, minus the outputs it returns."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    indices, sq_dist = fn(z, codebook)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - before - indices.nbytes - sq_dist.nbytes


def compile_times() -> tuple[float, float]:
    """(first compile in a fresh cache dir, load from that cache in a second process), seconds.

    Each includes the first call, as a user would see it."""
    code = (
        "import time, numpy as np\n"
        "t = time.perf_counter()\n"
        "from tinyvae.kernels import codebook as cb\n"
        "z = np.zeros((4, 3), np.float32)\n"
        "cb.nearest_code_numba(z, z)\n"
        "print(time.perf_counter() - t)\n"
    )
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        runs = [
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        ]
        runs.append(
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        )
    return float(runs[0].stdout), float(runs[1].stdout)


def worker():
    """Time one implementation in this (fresh) process; print per-size call times and OpenBLAS's kernels."""
    import tinyvae

    rng = np.random.default_rng(0)
    fn = faiss_search if ARGS.worker == "faiss" else cb.nearest_code_numba
    if faiss is not None:
        faiss.omp_set_num_threads(ARGS.threads)
    times = {}
    for n, k, d in SIZES:
        z = rng.standard_normal((n, d)).astype(np.float32)  # (N, D)
        codebook = rng.standard_normal((k, d)).astype(np.float32)  # (K, D)
        fn(z, codebook)  # warm-up (and numba compile or cache load)
        times[str((n, k, d))] = []
        for _ in range(ARGS.calls):
            start = time.perf_counter()
            fn(z, codebook)
            times[str((n, k, d))].append(time.perf_counter() - start)
    print(json.dumps({"times": times, "blas_kernels": tinyvae.backend.openblas_kernels()}))


def separate_processes():
    """numba and faiss in fresh processes, alternating; faiss with and without tinyvae's OpenBLAS choice."""
    from _machine import fresh_process_environment  # benchmarks/ is on sys.path when a script runs

    plain = {key: value for key, value in os.environ.items() if key != "OPENBLAS_CORETYPE"}
    tuned = fresh_process_environment(dict(plain))
    variants = {"numba (tinyvae)": ("numba", tuned)}
    if faiss is not None:
        variants["faiss, OpenBLAS's own kernels"] = ("faiss", plain)
        if tuned != plain:
            variants["faiss, tinyvae's OpenBLAS choice"] = ("faiss", tuned)
    times = {name: {} for name in variants}
    kernels = {}
    for _ in range(ARGS.rounds):
        for name, (impl, env) in variants.items():
            command = [sys.executable, __file__, "--worker", impl, "--threads", str(ARGS.threads)]
            command += ["--calls", str(ARGS.calls)]
            out = json.loads(
                subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
            )
            kernels[name] = out["blas_kernels"]
            for size, calls in out["times"].items():
                times[name].setdefault(size, []).extend(calls)
    print(
        f"threads={ARGS.threads}; {ARGS.rounds} rounds of one fresh process per implementation, "
        f"{ARGS.calls} timed calls each after a warm-up"
    )
    print("| (N, K, D) | implementation | OpenBLAS kernels | median ms | min ms |")
    print("|---|---|---|---|---|")
    for size in times["numba (tinyvae)"]:
        medians = {}
        for name in variants:
            medians[name] = 1e3 * float(np.median(times[name][size]))
            fastest = 1e3 * min(times[name][size])
            print(f"| {size} | {name} | {kernels[name]} | {medians[name]:.1f} | {fastest:.1f} |")
        faiss_best = min((m for name, m in medians.items() if name.startswith("faiss")), default=None)
        if faiss_best is not None:
            print(f"| {size} | numba / best faiss | | {medians['numba (tinyvae)'] / faiss_best:.2f}× | |")


def main():
    if ARGS.worker:
        return worker()
    if ARGS.separate_processes:
        return separate_processes()
    import numba

    print(
        f"threads={ARGS.threads} numpy={np.__version__} numba={numba.__version__} "
        f"faiss={getattr(faiss, '__version__', 'not installed')}"
    )
    if not ARGS.no_compile_timing:
        first, cached = compile_times()
        print(
            f"numba import + compile + first call, fresh cache: {first:.2f} s; "
            f"from the on-disk cache: {cached:.2f} s"
        )

    cb._numba_kernel()  # compile (or load) before timing
    parallel = None
    if ARGS.parallel_pass:
        parallel = numba.njit(cb._NUMBA_SIGNATURES, parallel=True, fastmath=cb._NUMBA_FASTMATH, cache=False)(
            cb._fused_argmin
        )
    rng = np.random.default_rng(0)
    for n, k, d in SIZES:
        z = rng.standard_normal((n, d)).astype(np.float32)  # (N, D)
        codebook = rng.standard_normal((k, d)).astype(np.float32)  # (K, D)
        impls = {
            "numpy GEMM trick": cb.nearest_code_numpy,
            "numba fused (serial pass)": cb.nearest_code_numba,
        }
        if parallel is not None:
            impls["numba fused (parallel pass)"] = lambda z, c: cb.nearest_code_numba(z, c, kernel=parallel)
        for mb in ARGS.chunk_mb:
            impls[f"numba fused, chunk {mb:g} MiB"] = lambda z, c, mb=mb: cb.nearest_code_numba(
                z, c, chunk_bytes=int(mb * 2**20)
            )
        if faiss is not None:
            faiss.omp_set_num_threads(ARGS.threads)
            impls["faiss IndexFlatL2"] = faiss_search
        reference = cb.nearest_code_numba(z, codebook)[0]
        times = {name: [] for name in impls}
        agree = {}
        for name, fn in impls.items():  # warm-up, and the agreement check
            agree[name] = float(np.mean(fn(z, codebook)[0] == reference))
        for _ in range(ARGS.rounds):
            for name, fn in impls.items():
                start = time.perf_counter()
                fn(z, codebook)
                times[name].append(time.perf_counter() - start)
        med = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
        print(f"\n(N, K, D) = ({n}, {k}, {d}) float32, {ARGS.rounds} rounds")
        print("| implementation | median ms | min ms | extra MiB | same indices as numba |")
        print("|---|---|---|---|---|")
        for name, fn in impls.items():
            mem = "n/a" if name.startswith("faiss") else f"{extra_bytes(fn, z, codebook) / 2**20:.2f}"
            print(f"| {name} | {med[name]:.1f} | {1e3 * min(times[name]):.1f} | {mem} | {agree[name]:.4f} |")
        ratio = med["numba fused (serial pass)"] / med["numpy GEMM trick"]
        print(f"numba/numpy median ratio: {ratio:.2f}")
        if faiss is not None:
            print(
                f"numba/faiss median ratio: {med['numba fused (serial pass)'] / med['faiss IndexFlatL2']:.2f}"
            )


if __name__ == "__main__":
    main()
