"""The convolution ops (issue 14) on CuPy arrays against the same ops on NumPy arrays: forward and every
gradient of conv2d and conv_transpose2d (float64, so differences are rounding alone), then the time of one
forward + backward of the issue's Conv(32→64) layer at batch 128 in float32.

    python benchmarks/gpu_conv_check.py        (on a machine with a GPU and CuPy; one line per check)
"""

import sys
import time

import cupy
import numpy

import tinyvae.functional as F
from tinyvae import backend
from tinyvae.tensor import Tensor

rng = numpy.random.default_rng(0)
CASES = [  # (name, op, shapes of x, W, b, stride, padding)
    ("conv2d s2 p1", F.conv2d, [(3, 2, 9, 8), (4, 2, 4, 3), (4,)], 2, 1),
    ("conv2d s3 p2", F.conv2d, [(2, 3, 5, 5), (2, 3, 2, 4), (2,)], 3, 2),
    ("conv_transpose2d s2 p1", F.conv_transpose2d, [(3, 4, 5, 6), (4, 2, 4, 4), (2,)], 2, 1),
    ("conv_transpose2d s3 p0", F.conv_transpose2d, [(2, 2, 3, 3), (2, 3, 3, 2), (3,)], 3, 0),
]


def run(op, arrays, g, xp, stride, padding):
    backend.use("numpy" if xp is numpy else "cupy")  # new Tensors live where the backend says
    tensors = [Tensor(xp.asarray(a), requires_grad=True) for a in arrays]
    out = op(*tensors, stride=stride, padding=padding)
    out.backward(xp.asarray(g))
    return [out.data] + [t.grad for t in tensors]


failures = 0
for name, op, shapes, stride, padding in CASES:
    arrays = [rng.standard_normal(s) for s in shapes]
    backend.use("numpy")
    g = rng.standard_normal(op(*(Tensor(a) for a in arrays), stride=stride, padding=padding).shape)
    host = run(op, arrays, g, numpy, stride, padding)
    device = run(op, arrays, g, cupy, stride, padding)
    for i, (h, d) in enumerate(zip(host, device, strict=True)):
        assert isinstance(d, cupy.ndarray), name
        got = cupy.asnumpy(d)
        ok = numpy.allclose(got, h, rtol=1e-10, atol=1e-12)
        failures += not ok
        what = "output" if i == 0 else f"gradient {i - 1}"
        print(f"{'ok  ' if ok else 'FAIL'} {name} {what}: max |difference| {numpy.abs(got - h).max():.1e}")

backend.use("cupy")
x = Tensor(cupy.asarray(rng.standard_normal((128, 32, 14, 14)), dtype=cupy.float32), requires_grad=True)
W = Tensor(cupy.asarray(0.1 * rng.standard_normal((64, 32, 4, 4)), dtype=cupy.float32), requires_grad=True)
for repeat in range(23):
    if repeat == 3:
        cupy.cuda.Device().synchronize()
        start = time.perf_counter()
    F.conv2d(x, W, stride=2, padding=1).sum().backward()
cupy.cuda.Device().synchronize()
milliseconds = (time.perf_counter() - start) / 20e-3
print(f"Conv(32→64) 14×14, batch 128, float32, forward + backward: {milliseconds:.2f} ms")
print("failures:", failures)
sys.exit(1 if failures else 0)
