"""The transformer prior's ops (issue 13) on CuPy arrays against the same ops on NumPy arrays: forward and
backward of embedding, layer_norm and causal_attention (float64, so differences are rounding alone).

    python benchmarks/gpu_ops_check.py        (on a machine with a GPU and CuPy; prints one line per check)
"""

import sys

import cupy
import numpy

import tinyvae.functional as F
from tinyvae import backend
from tinyvae.tensor import Tensor

failures = 0


def compare(name, on_host, on_device, rtol=1e-9):
    global failures
    assert isinstance(on_host, numpy.ndarray) and isinstance(on_device, cupy.ndarray), name
    got = cupy.asnumpy(on_device)
    error = float(numpy.max(numpy.abs(got - on_host) / (numpy.abs(on_host) + 1e-12)))
    ok = numpy.allclose(got, on_host, rtol=rtol, atol=1e-10)
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max relative difference {error:.2e}")


def run_op(op, arrays, grads_of, xp):
    backend.use("numpy" if xp is numpy else "cupy")  # new Tensors live where the backend says
    tensors = [Tensor(xp.asarray(a), requires_grad=i in grads_of) for i, a in enumerate(arrays)]
    out = op(*tensors)
    out.backward(xp.ones(out.shape))
    return out.data, [tensors[i].grad for i in grads_of]


rng = numpy.random.default_rng(0)
cases = {
    "layer_norm": (
        F.layer_norm,
        [rng.normal(size=(4, 5, 8)), rng.normal(size=8), rng.normal(size=8)],
        [0, 1, 2],
    ),
    "causal_attention": (F.causal_attention, [rng.normal(size=(2, 3, 6, 4)) for _ in range(3)], [0, 1, 2]),
}
for name, (op, arrays, grads_of) in cases.items():
    host, host_grads = run_op(op, arrays, grads_of, numpy)
    device, device_grads = run_op(op, arrays, grads_of, cupy)
    compare(f"{name} forward", host, device)
    for i, (h, d) in enumerate(zip(host_grads, device_grads, strict=True)):
        compare(f"{name} gradient {i}", h, d)

table = rng.normal(size=(7, 3))
indices = numpy.array([[1, 1, 6], [0, 1, 2]])
for xp in (numpy, cupy):
    backend.use("numpy" if xp is numpy else "cupy")
    t = Tensor(xp.asarray(table), requires_grad=True)
    out = F.embedding(t, xp.asarray(indices) if xp is cupy else indices)
    out.backward(xp.ones(out.shape))
    if xp is numpy:
        host_out, host_grad = out.data, t.grad
    else:
        compare("embedding forward", host_out, out.data)
        compare("embedding gradient (repeated index)", host_grad, t.grad)

print("failures:", failures)
sys.exit(1 if failures else 0)
