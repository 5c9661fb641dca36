"""Convolutions on the CPU: im2col + BLAS GEMM (what ``tinyvae/ops/conv.py`` runs) against a direct numba
convolution, forward and backward, for the four layers of issue 14's convolutional VAE at batch 128.

    python benchmarks/bench_conv_kernels.py                    # 1 and 2 threads, 5 rounds
    python benchmarks/bench_conv_kernels.py --rounds 9 --threads 1

Layers (float32, kernel 4, stride 2, padding 1): Conv(1→32) on 28×28, Conv(32→64) on 14×14,
ConvTranspose(64→32) on 7×7, ConvTranspose(32→1) on 14×14. "Backward" computes every gradient (x, W, b).

Paths, given the same arrays, each checked against the NumPy-im2col path (to 1e-4 of the largest entry,
float32 sums in other orders) before it is timed:

* ``im2col+GEMM``: the ops' own Function.forward / Function.backward under the numba backend (numba
  im2col/col2im, OpenBLAS GEMM);
* ``im2col+GEMM, NumPy im2col``: the same under the numpy backend (strided-slice im2col/col2im);
* ``direct numba``: three loops written here, not shipped: the convolution itself, its input gradient (a
  scatter of W-weighted g) and its weight gradient (a correlation of x with g), each a ``prange`` over the
  batch (or the output channels for dW) with the innermost loop along a row of pixels, compiled with
  ``fastmath`` so the reductions may vectorise. A transposed convolution runs the same three loops with the
  roles swapped (its forward is the input-gradient loop, and so on).

Each path and thread count runs in its own fresh process with OMP/OPENBLAS/NUMBA_NUM_THREADS set before
NumPy is imported (BLAS and the direct loops get them; im2col/col2im keep kernels/im2col.NUMBA_THREADS, as
in the ops). One process per path, because at 2 threads numba's OpenMP threads spin after a parallel region:
a path sharing a process with another was timed against the other's spinning threads (up to 20x slower).
A round runs every (threads, path) process once, each timing ``--repeats`` calls per layer and phase; we
report the median over rounds of each process's median.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

LAYERS = [  # (name, transposed, C_in, C_out, image size)
    ("Conv(1→32) 28×28", False, 1, 32, 28),
    ("Conv(32→64) 14×14", False, 32, 64, 14),
    ("ConvT(64→32) 7×7", True, 64, 32, 7),
    ("ConvT(32→1) 14×14", True, 32, 1, 14),
]
KERNEL, STRIDE, PADDING = 4, 2, 1
PATHS = ["im2col+GEMM", "im2col+GEMM, NumPy im2col", "direct numba"]


# ---------------------------------------------------------------- the direct loops (compiled in the worker)


def _direct_forward(x, W, b, y, stride, padding):
    """y[n, o, i, j] = b[o] + Σ_{c, ki, kj} W[o, c, ki, kj] x[n, c, s·i + ki − p, s·j + kj − p]."""
    n_batch, channels, height, width = x.shape
    out_channels, _, kh, kw = W.shape
    out_h, out_w = y.shape[2], y.shape[3]
    for n in numba.prange(n_batch):  # noqa: F821 (set in the worker)
        for o in range(out_channels):
            for i in range(out_h):
                for j in range(out_w):
                    y[n, o, i, j] = b[o]
            for c in range(channels):
                for ki in range(kh):
                    i_lo = 0 if ki >= padding else (padding - ki + stride - 1) // stride
                    i_hi = max(i_lo, min(out_h, (height - 1 + padding - ki) // stride + 1))
                    for kj in range(kw):
                        j_lo = 0 if kj >= padding else (padding - kj + stride - 1) // stride
                        j_hi = max(j_lo, min(out_w, (width - 1 + padding - kj) // stride + 1))
                        weight = W[o, c, ki, kj]
                        for i in range(i_lo, i_hi):
                            h = stride * i + ki - padding
                            for j in range(j_lo, j_hi):
                                y[n, o, i, j] += weight * x[n, c, h, stride * j + kj - padding]


def _direct_input_grad(g, W, dx, stride, padding):
    """dx[n, c, h, w] = Σ W[o, c, ki, kj] g[n, o, i, j] over the taps landing on (h, w), image by image."""
    n_batch, channels, height, width = dx.shape
    out_channels, _, kh, kw = W.shape
    out_h, out_w = g.shape[2], g.shape[3]
    for n in numba.prange(n_batch):  # noqa: F821
        for c in range(channels):
            for h in range(height):
                for w in range(width):
                    dx[n, c, h, w] = 0.0
        for o in range(out_channels):
            for c in range(channels):
                for ki in range(kh):
                    i_lo = 0 if ki >= padding else (padding - ki + stride - 1) // stride
                    i_hi = max(i_lo, min(out_h, (height - 1 + padding - ki) // stride + 1))
                    for kj in range(kw):
                        j_lo = 0 if kj >= padding else (padding - kj + stride - 1) // stride
                        j_hi = max(j_lo, min(out_w, (width - 1 + padding - kj) // stride + 1))
                        weight = W[o, c, ki, kj]
                        for i in range(i_lo, i_hi):
                            h = stride * i + ki - padding
                            for j in range(j_lo, j_hi):
                                dx[n, c, h, stride * j + kj - padding] += weight * g[n, o, i, j]


def _direct_weight_grad(x, g, dW, stride, padding):
    """dW[o, c, ki, kj] = Σ_{n, i, j} g[n, o, i, j] x[n, c, s·i + ki − p, s·j + kj − p]: one output channel
    per iteration, so no two iterations write the same dW."""
    n_batch, channels, height, width = x.shape
    out_channels, _, kh, kw = dW.shape
    out_h, out_w = g.shape[2], g.shape[3]
    for o in numba.prange(out_channels):  # noqa: F821
        for c in range(channels):
            for ki in range(kh):
                i_lo = 0 if ki >= padding else (padding - ki + stride - 1) // stride
                i_hi = max(i_lo, min(out_h, (height - 1 + padding - ki) // stride + 1))
                for kj in range(kw):
                    j_lo = 0 if kj >= padding else (padding - kj + stride - 1) // stride
                    j_hi = max(j_lo, min(out_w, (width - 1 + padding - kj) // stride + 1))
                    total = dW.dtype.type(0)  # float32 sums, as BLAS does
                    for n in range(n_batch):
                        for i in range(i_lo, i_hi):
                            h = stride * i + ki - padding
                            for j in range(j_lo, j_hi):
                                total += g[n, o, i, j] * x[n, c, h, stride * j + kj - padding]
                    dW[o, c, ki, kj] = total


# ---------------------------------------------------------------- the worker: one thread count


class _Ctx:
    """Stands in for the engine's Context: the ops' forward/backward are timed without graph bookkeeping."""

    needs_input_grad = (True, True, True)

    def save(self, *arrays):
        self.saved = arrays


def worker(args):
    import time

    import numpy as np

    import tinyvae as tv
    from tinyvae import backend
    from tinyvae.ops.conv import Conv2d, ConvTranspose2d

    numba = backend.load_numba()
    numba.set_num_threads(args.threads)
    globals()["numba"] = numba
    options = {"parallel": True, "fastmath": True, "boundscheck": False}
    f4 = "float32[:, :, :, ::1]"
    forward = numba.njit(f"void({f4}, {f4}, float32[::1], {f4}, int64, int64)", **options)(_direct_forward)
    input_grad = numba.njit(f"void({f4}, {f4}, {f4}, int64, int64)", **options)(_direct_input_grad)
    weight_grad = numba.njit(f"void({f4}, {f4}, {f4}, int64, int64)", **options)(_direct_weight_grad)

    rng = np.random.default_rng(0)
    batch = args.batch
    results = {}
    for name, transposed, c_in, c_out, size in LAYERS:
        x = rng.standard_normal((batch, c_in, size, size), dtype=np.float32)
        if transposed:
            W = rng.standard_normal((c_in, c_out, KERNEL, KERNEL), dtype=np.float32) * 0.1
            out = (size - 1) * STRIDE - 2 * PADDING + KERNEL
            op = ConvTranspose2d
        else:
            W = rng.standard_normal((c_out, c_in, KERNEL, KERNEL), dtype=np.float32) * 0.1
            out = (size + 2 * PADDING - KERNEL) // STRIDE + 1
            op = Conv2d
        b = rng.standard_normal(c_out, dtype=np.float32)
        g = rng.standard_normal((batch, c_out, out, out), dtype=np.float32)

        def gemm_path(op=op, x=x, W=W, b=b, g=g):
            ctx = _Ctx()
            return (lambda: op.forward(ctx, x, W, b, STRIDE, PADDING)), (lambda: op.backward(ctx, g))

        def direct_path(transposed=transposed, x=x, W=W, b=b, g=g, out=out):
            y = np.empty(g.shape, dtype=np.float32)
            dx, dW = np.empty_like(x), np.empty_like(W)
            zero_bias = np.zeros(W.shape[0], dtype=np.float32)

            def run_forward():
                if transposed:  # conv2d's input gradient with W read as (O = C_in, C = C_out): then + b
                    input_grad(x, W, y, STRIDE, PADDING)
                    y[...] += b[None, :, None, None]
                else:
                    forward(x, W, b, y, STRIDE, PADDING)
                return y

            def run_backward():
                if transposed:  # dx = conv2d(g, W); dW[c_in, c_out] = correlation of g with x
                    forward(g, W, zero_bias, dx, STRIDE, PADDING)
                    weight_grad(g, x, dW, STRIDE, PADDING)
                else:
                    input_grad(g, W, dx, STRIDE, PADDING)
                    weight_grad(x, g, dW, STRIDE, PADDING)
                return dx, dW, g.sum(axis=(0, 2, 3))

            return run_forward, run_backward

        paths = {}
        for label, use in (("im2col+GEMM, NumPy im2col", "numpy"), ("im2col+GEMM", "numba")):
            tv.backend.use(use)
            fwd, bwd = gemm_path()
            paths[label] = (use, fwd, bwd)
        paths["direct numba"] = ("numba", *direct_path())

        # The timed path gives the numbers of the NumPy reference path (float32 sums in different orders:
        # within 1e-4 of the largest entry).
        outputs = {}
        for label in dict.fromkeys(["im2col+GEMM, NumPy im2col", args.path]):
            use, fwd, bwd = paths[label]
            tv.backend.use(use)
            outputs[label] = [fwd().copy(), *(a.copy() for a in bwd())]
        for got, expected in zip(outputs[args.path], outputs["im2col+GEMM, NumPy im2col"], strict=True):
            assert np.abs(got - expected).max() <= 1e-4 * float(np.abs(expected).max()), (name, args.path)

        use, fwd, bwd = paths[args.path]
        tv.backend.use(use)
        times = {"forward": [], "backward": []}
        for _ in range(args.repeats):
            for phase, call in (("forward", fwd), ("backward", bwd)):
                start = time.perf_counter()
                call()
                times[phase].append(time.perf_counter() - start)
        for phase, samples in times.items():
            results[f"{name} | {args.path} | {phase}"] = 1e3 * float(np.median(samples))
    print(json.dumps({"kernels": backend.openblas_kernels(), "results": results}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per path, layer and round")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--paths", nargs="+", default=PATHS, choices=PATHS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.threads = args.threads[0]
        return worker(args)

    import numpy as np
    from _machine import cpu_model, fresh_process_environment

    medians = {}
    kernels = None
    for _ in range(args.rounds):
        for threads in args.threads:
            for path in args.paths:
                env = fresh_process_environment(dict(os.environ))
                for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
                    env[variable] = str(threads)
                command = [sys.executable, __file__, "--worker", "--threads", str(threads), "--path", path]
                command += ["--repeats", str(args.repeats), "--batch", str(args.batch)]
                out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                report = json.loads(out.stdout)
                kernels = report["kernels"]
                for key, ms in report["results"].items():
                    medians.setdefault((threads, key), []).append(ms)
    setting = f"batch {args.batch}, float32; {args.rounds} rounds × {args.repeats} calls"
    print(f"{cpu_model()}, OpenBLAS {kernels}; {setting}")
    print("| threads | layer | path | forward ms | backward ms |")
    print("|---|---|---|---|---|")
    rows = {}
    for (threads, key), samples in medians.items():
        layer, path, phase = key.split(" | ")
        rows.setdefault((threads, layer, path), {})[phase] = float(np.median(samples))
    for (threads, layer, path), phases in rows.items():
        print(f"| {threads} | {layer} | {path} | {phases['forward']:.2f} | {phases['backward']:.2f} |")


if __name__ == "__main__":
    main()
