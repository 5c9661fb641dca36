"""The ReLU kernels (kernels/relu.py): every version equals the NumPy reference exactly (ReLU and its mask
involve no rounding), NaN included, on every layout; the op routes through them."""

import numpy as np
import pytest
from backends import (
    BACKENDS,
    require_backend,
    run_under_each_cpu_backend,
    to_backend_arrays,
    to_numpy,
    versions_called,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tinyvae.kernels import relu

import tinyvae as tv
import tinyvae.functional as F

values = st.floats(allow_nan=True, allow_infinity=True, width=32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7),
    layout=st.sampled_from(["contiguous", "transposed", "read-only"]),
)
def test_every_version_matches_the_reference(backend, dtype, data, shape, layout):
    """Exact equality (NaN where the reference has NaN) for any shape, including 0-d, empty and size-1
    dims, ±inf and NaN inputs and gradients, and layouts the numba version hands back to NumPy; CuPy's
    float32 up to its flush-to-zero of subnormals (see below)."""
    require_backend(backend)
    x = data.draw(hnp.arrays(dtype, shape, elements=values))
    g = data.draw(hnp.arrays(dtype, shape, elements=values))
    if layout == "transposed":
        x, g = x.T, g.T  # non-contiguous for ndim >= 2
    elif layout == "read-only":
        x.flags.writeable = g.flags.writeable = False
    with np.errstate(invalid="ignore"):
        y_expected = relu.relu_forward_numpy(x)
        grad_expected = relu.relu_backward_numpy(g, y_expected)
        bx, bg, by = to_backend_arrays(backend, x, g, y_expected)
        y = to_numpy(relu.FORWARD[backend](bx))
        grad = to_numpy(relu.BACKWARD[backend](bg, by))
    if backend == "cupy" and dtype == np.float32:
        # CuPy compiles with flush-to-zero (-ftz=true), so the GPU reads a float32 subnormal as 0 where
        # NumPy keeps it: x = −1e-40 compares as 0 and passes the forward unchanged, g = 1e-40 times 1 is
        # 0, and a subnormal y > 0 fails the backward's y > 0 test, so its gradient is g · 0 instead of g
        # (the kink moves by less than 1.18e-38, float32's smallest normal). Elsewhere: equal within that.
        tiny = np.finfo(np.float32).tiny
        subnormal_y = (y_expected > 0) & (y_expected < tiny)
        with np.errstate(invalid="ignore"):
            grad_expected = np.where(subnormal_y, g * dtype(0), grad_expected)
        np.testing.assert_allclose(y, y_expected, rtol=0, atol=tiny)
        np.testing.assert_allclose(grad, grad_expected, rtol=0, atol=tiny)
    else:
        np.testing.assert_array_equal(y, y_expected)
        np.testing.assert_array_equal(grad, grad_expected)
    assert y.dtype == dtype and grad.dtype == dtype and y.shape == x.shape


def test_routing_follows_the_backend(monkeypatch):
    """Under the numba backend the ReLU op runs the numba passes; under numpy, the reference."""
    require_backend("numba")
    calls = versions_called(monkeypatch, relu.FORWARD, relu.BACKWARD)
    x = tv.Tensor(np.array([[-1.0, 2.0]], np.float32), requires_grad=True)

    def step(backend):
        calls.clear()
        x.zero_grad()
        (F.relu(x) * 3.0).sum().backward()
        assert calls == [backend, backend]
        np.testing.assert_array_equal(x.grad, [[0.0, 3.0]])

    run_under_each_cpu_backend(step)


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match=r"relu_forward: backend 'fortran' is not one of"):
        relu.relu_forward(np.zeros(2, np.float32), backend="fortran")


def test_import_compiles_nothing():
    """Importing the kernel file (as the op module does) neither imports numba nor compiles."""
    import subprocess
    import sys

    code = (
        "import sys, tinyvae.kernels.relu as r; "
        "assert 'numba' not in sys.modules; assert r._numba_kernels.cache_info().currsize == 0"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
