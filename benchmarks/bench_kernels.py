"""Fused elementwise kernels, each version side by side in one run: the Adam update, the arithmetic around
the elementwise Bernoulli op's exp/log1p (kernels/bernoulli_parts.py: forward terms and logit gradient),
ReLU forward and backward, and the kernels no op calls (kernels/unrouted/): the summed Bernoulli
log-likelihood (row sums + gradient), the IWAE row-wise logsumexp (out + softmax) and the fused
reparameterize + Gaussian KL (forward, backward); NumPy reference against numba, float32; plus numba's
first-call compile time and the cached start-up time, each measured in a fresh process.

    python benchmarks/bench_kernels.py [--rounds 15] [--threads 1,2] [--markdown]

Each thread count runs in its own process with OMP_NUM_THREADS / NUMBA_NUM_THREADS set before NumPy and
numba are imported. Times are medians over rounds; in each round the versions run back to back. The
logsumexp and Gaussian numba kernels take a ``threads`` argument (default 1): at T threads they are called
with threads=T, so the 2-thread rows show what numba's second thread buys on these small arrays.

Layouts: the IWAE log-weights are (K, B) = (50, B) as ``VAE.log_weights`` returns them; both versions are
given the (B, K) transposed *view* (the NumPy reference reduces it in place, the numba version copies it to
C order first, and that copy is in its time). The Gaussian kernels take (B, Z) = (B, 20) C-order arrays.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

from _machine import cpu_model, fresh_process_environment  # benchmarks/ is on sys.path when a script runs

ADAM_PARAMETERS = 652_824  # the MLP VAE 784-400-20's parameter count (two 20-unit heads)
BERNOULLI_BATCHES = (16, 128, 512)
VAE_BATCHES = (16, 128, 512)  # B for the logsumexp (over K = 50 samples) and the Gaussian (Z = 20) kernels
IWAE_K, LATENT = 50, 20


def worker(rounds, threads):
    import time

    import numpy as np
    from tinyvae.kernels import adam, bernoulli_parts, relu
    from tinyvae.kernels.unrouted import bernoulli, gaussian, logsumexp

    from tinyvae import backend

    def median_ms(fn, repeat):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1e3)

    rng = np.random.default_rng(0)
    results = {}
    p = rng.standard_normal(ADAM_PARAMETERS).astype(np.float32)
    g, m, v = rng.standard_normal(ADAM_PARAMETERS).astype(np.float32), np.zeros_like(p), np.zeros_like(p)
    work = np.empty_like(p)
    args = (1e-3, 1e-8, 0.9, 0.999, work)
    adam.adam_update_numba(p, g, m, v, *args)  # compile / load before timing
    samples = {"numpy": [], "numba": []}
    for _ in range(rounds):
        samples["numpy"].append(median_ms(lambda: adam.adam_update_numpy(p, g, m, v, *args), 10))
        samples["numba"].append(median_ms(lambda: adam.adam_update_numba(p, g, m, v, *args), 10))
    results["adam"] = {name: float(np.median(t)) for name, t in samples.items()}

    for batch in BERNOULLI_BATCHES:
        logits = (3 * rng.standard_normal((batch, 784))).astype(np.float32)
        x = (rng.uniform(size=(batch, 784)) < 0.3).astype(np.float32)
        bernoulli.bernoulli_numba(logits, x)
        samples = {"numpy": [], "numba": []}
        for _ in range(rounds):
            samples["numpy"].append(median_ms(lambda l=logits, t=x: bernoulli.bernoulli_numpy(l, t), 10))
            samples["numba"].append(median_ms(lambda l=logits, t=x: bernoulli.bernoulli_numba(l, t), 10))
        results[f"bernoulli b{batch}"] = {name: float(np.median(t)) for name, t in samples.items()}

    def compare(label, numpy_fn, numba_fn, calls=50):
        numba_fn()  # compile / load before timing
        samples = {"numpy": [], "numba": []}
        for _ in range(rounds):
            samples["numpy"].append(median_ms(numpy_fn, calls))
            samples["numba"].append(median_ms(numba_fn, calls))
        results[label] = {name: float(np.median(t)) for name, t in samples.items()}

    for shape in [(batch, 784) for batch in VAE_BATCHES] + [(IWAE_K, 128, 784)]:
        logits = (3 * rng.standard_normal(shape)).astype(np.float32)
        x = (rng.uniform(size=shape[-2:]) < 0.3).astype(np.float32)  # IWAE: one batch for the K samples
        e = np.exp(-np.abs(logits))
        log1p_e = np.log1p(e)
        g = np.broadcast_to(rng.standard_normal((*shape[:-1], 1)).astype(np.float32), shape)  # a sum's grad
        compare(
            f"bernoulli_parts terms {shape}",
            lambda a=(logits, x, log1p_e): bernoulli_parts.log_prob_terms_numpy(*a),
            lambda a=(logits, x, log1p_e): bernoulli_parts.log_prob_terms_numba(*a),
            calls=10,
        )
        compare(
            f"bernoulli_parts gradient {shape}",
            lambda a=(logits, x, e, g): bernoulli_parts.logit_gradient_numpy(*a),
            lambda a=(logits, x, e, g): bernoulli_parts.logit_gradient_numba(*a),
            calls=10,
        )

    for batch in VAE_BATCHES:
        hidden = rng.standard_normal((batch, 400)).astype(np.float32)  # the VAE's hidden layer
        g_hidden = rng.standard_normal((batch, 400)).astype(np.float32)
        y_hidden = np.maximum(hidden, 0)
        compare(
            f"relu forward ({batch}, 400)",
            lambda a=hidden: relu.relu_forward_numpy(a),
            lambda a=hidden: relu.relu_forward_numba(a),
        )
        compare(
            f"relu backward ({batch}, 400)",
            lambda a=(g_hidden, y_hidden): relu.relu_backward_numpy(*a),
            lambda a=(g_hidden, y_hidden): relu.relu_backward_numba(*a),
        )

    for batch in VAE_BATCHES:
        log_w = (30 * rng.standard_normal((IWAE_K, batch))).astype(np.float32)  # (K, B), as the model has it
        rows = log_w.T  # (B, K) view: rows = examples, columns = samples
        compare(
            f"logsumexp ({batch}, {IWAE_K}) from (K, B).T",
            lambda r=rows: logsumexp.logsumexp_rows_numpy(r),
            lambda r=rows: logsumexp.logsumexp_rows_numba(r, threads=threads),
        )
    for batch in VAE_BATCHES:
        mu, logvar, eps = (rng.standard_normal((batch, LATENT)).astype(np.float32) for _ in range(3))
        g_z, g_kl = rng.standard_normal((batch, LATENT)).astype(np.float32), np.ones(batch, np.float32)
        _, _, sigma, var = gaussian.gaussian_forward_numpy(mu, logvar, eps)
        compare(
            f"gaussian forward ({batch}, {LATENT})",
            lambda a=(mu, logvar, eps): gaussian.gaussian_forward_numpy(*a),
            lambda a=(mu, logvar, eps): gaussian.gaussian_forward_numba(*a, threads=threads),
        )
        saved = (g_z, g_kl, mu, eps, sigma, var)
        compare(
            f"gaussian backward ({batch}, {LATENT})",
            lambda a=saved: gaussian.gaussian_backward_numpy(*a),
            lambda a=saved: gaussian.gaussian_backward_numba(*a, threads=threads),
        )

    def thread_switch():
        with backend.numba_threads(threads):
            pass

    # What every numba call above pays before its loop: numba_threads' get/set of the pool size.
    overhead = [median_ms(thread_switch, 200) for _ in range(rounds)]
    results["numba_threads() enter + exit alone"] = {
        "numpy": float("nan"),
        "numba": float(np.median(overhead)),
    }
    print(json.dumps(results))


def startup_seconds(cache_dir):
    """First call of each numba kernel in a fresh process, with the given numba cache directory."""
    code = (
        "import json, numpy as np\n"
        "from tinyvae.kernels import adam, bernoulli_parts, codebook, relu\n"
        "from tinyvae.kernels.unrouted import bernoulli, gaussian, logsumexp\n"
        "z = np.zeros((4, 3), np.float32)\n"
        "bernoulli_parts.log_prob_terms_numba(z, z, z)\n"
        "relu.relu_forward_numba(z)\n"
        "adam.adam_update_numba(z.copy(), z, z.copy(), z.copy(), 1e-3, 1e-8, 0.9, 0.999)\n"
        "bernoulli.bernoulli_numba(z, z)\n"
        "codebook.nearest_code_numba(z, z)\n"
        "logsumexp.logsumexp_rows_numba(z)\n"
        "gaussian.gaussian_forward_numba(z, z, z)\n"
        "kernels = {'adam': adam, 'bernoulli': bernoulli, 'codebook': codebook, 'logsumexp': logsumexp,\n"
        "           'gaussian (forward + backward)': gaussian,\n"
        "           'bernoulli_parts (terms + gradient)': bernoulli_parts, 'relu (both)': relu}\n"
        "print(json.dumps({name: k.COMPILE_SECONDS['numba'] for name, k in kernels.items()}))\n"
    )
    env = fresh_process_environment({**os.environ, "NUMBA_CACHE_DIR": cache_dir})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads-here", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.rounds, args.threads_here)
        return

    by_threads = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
        env = fresh_process_environment(env)
        env["NUMBA_NUM_THREADS"] = str(threads)
        command = [sys.executable, __file__, "--worker", "--rounds", str(args.rounds)]
        command += ["--threads-here", str(threads)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        by_threads[threads] = json.loads(out.stdout)
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = startup_seconds(cache_dir)
        warm = startup_seconds(cache_dir)

    lines = [
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs; "
        f"date {datetime.date.today()}; command `python benchmarks/bench_kernels.py --rounds {args.rounds}`.",
        "",
        "| kernel | threads | NumPy µs | numba µs | numba / NumPy |",
        "|---|---|---|---|---|",
    ]
    for threads, results in by_threads.items():
        for kernel, times in results.items():
            numpy_us, numba_us = 1e3 * times["numpy"], 1e3 * times["numba"]
            if numpy_us != numpy_us:  # NaN: a numba-only measurement
                lines.append(f"| {kernel} | {threads} | — | {numba_us:.1f} | — |")
                continue
            ratio = numba_us / numpy_us
            lines.append(f"| {kernel} | {threads} | {numpy_us:.1f} | {numba_us:.1f} | {ratio:.2f}× |")
    lines += ["", "| numba kernel | first call, empty cache (s) | first call, cached (s) |", "|---|---|---|"]
    for kernel in cold:
        lines.append(f"| {kernel} | {cold[kernel]:.2f} | {warm[kernel]:.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
