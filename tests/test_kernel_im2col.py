"""The im2col/col2im kernels (kernels/im2col.py): every version equals the NumPy reference exactly (im2col
is a copy; col2im adds each pixel's contributions in the same (ki, kj) order in every version), col2im is
the adjoint of im2col, and the convolution ops route through them."""

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
from tinyvae.kernels import im2col as kernels

import tinyvae as tv
import tinyvae.functional as F


@st.composite
def geometries(draw):
    """(x_shape, kh, kw, stride, padding): batch and channels 1-3, kernels 1-4, stride 1-3, padding 0-2,
    images from the smallest the kernel fits (1 × 1 included) to 8 wider."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * padding), max(1, kh - 2 * padding) + 8))
    w = draw(st.integers(max(1, kw - 2 * padding), max(1, kw - 2 * padding) + 8))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w), kh, kw, stride, padding


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(geometry=geometries(), seed=st.integers(0, 2**16), layout=st.sampled_from(["contiguous", "odd"]))
def test_every_version_matches_the_reference(backend, dtype, geometry, seed, layout):
    """Bit-for-bit equality of both kernels with the NumPy reference, on C-contiguous inputs and on
    transposed or read-only ones (which the numba version hands back to NumPy)."""
    require_backend(backend)
    x_shape, kh, kw, stride, padding = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    cols_expected = kernels.im2col_numpy(x, kh, kw, stride, padding)
    c = rng.standard_normal(cols_expected.shape).astype(dtype)
    if layout == "odd":
        x = np.asfortranarray(x)
        c.flags.writeable = False
    image_expected = kernels.col2im_numpy(c, x_shape, kh, kw, stride, padding)
    bx, bc = to_backend_arrays(backend, x, c)
    cols = to_numpy(kernels.IM2COL[backend](bx, kh, kw, stride, padding))
    image = to_numpy(kernels.COL2IM[backend](bc, x_shape, kh, kw, stride, padding))
    assert cols.dtype == dtype and image.dtype == dtype and image.shape == x_shape
    np.testing.assert_array_equal(cols, cols_expected)
    np.testing.assert_array_equal(image, image_expected)


@given(geometry=geometries(), seed=st.integers(0, 2**16))
def test_the_reference_is_a_window_copy_and_col2im_its_adjoint(geometry, seed):
    """im2col's column (n, i, j) is the padded window at (s·i, s·j), row by row (c, ki, kj); and
    ⟨im2col(x), C⟩ = ⟨x, col2im(C)⟩ to rounding, so col2im adds every window back where it came from."""
    x_shape, kh, kw, stride, padding = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    cols = kernels.im2col_numpy(x, kh, kw, stride, padding)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, w = x_shape
    out_h, out_w = kernels.output_size(h, kh, stride, padding), kernels.output_size(w, kw, stride, padding)
    for column, (b, i, j) in enumerate(np.ndindex(n, out_h, out_w)):
        window = padded[b, :, stride * i : stride * i + kh, stride * j : stride * j + kw]
        np.testing.assert_array_equal(cols[:, column], window.reshape(-1))
    c = rng.standard_normal(cols.shape)
    left, right = (
        float(np.sum(cols * c)),
        float(np.sum(x * kernels.col2im_numpy(c, x_shape, kh, kw, stride, padding))),
    )
    assert abs(left - right) <= 1e-12 * (float(np.sum(np.abs(cols * c))) + 1.0)


def test_col2im_adds_overlapping_windows():
    """A 1 × 1 image padded to 3 × 3 and read by a 2 × 2 kernel at stride 1: all four windows contain the
    pixel, once each, so col2im of all-ones cols gives 4 for every row of the kernel (C = 1)."""
    for backend in ("numpy", "numba"):
        require_backend(backend)
        image = kernels.col2im(np.ones((4, 4)), (1, 1, 1, 1), 2, 2, 1, 1, backend=backend)
        np.testing.assert_array_equal(image, [[[[4.0]]]])


def test_col2im_refuses_cols_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"cols has shape \(4, 5\) .* \(1, 1, 3, 3\) .* shape \(4, 4\)"):
        kernels.col2im(np.ones((4, 5)), (1, 1, 3, 3), 2, 2, 1, 0, backend="numba")


def test_routing_follows_the_backend(monkeypatch):
    """Under the numba backend both convolution ops run the numba kernels, forward and backward; under
    numpy, the reference; the gradients agree."""
    require_backend("numba")
    calls = versions_called(monkeypatch, kernels.IM2COL, kernels.COL2IM)
    rng = np.random.default_rng(0)
    x_array = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    W_array = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    grads = {}

    def step(backend):
        calls.clear()
        # built under the backend, so they hold NumPy arrays even where the default backend is cupy
        x, W = tv.Tensor(x_array, requires_grad=True), tv.Tensor(W_array, requires_grad=True)
        y = F.conv2d(x, W, stride=2, padding=1)  # im2col
        F.conv_transpose2d(y, W, stride=2, padding=1).sum().backward()  # col2im; backward im2col, col2im
        assert calls == [backend] * 4
        grads[backend] = x.grad.copy()

    run_under_each_cpu_backend(step)
    np.testing.assert_allclose(grads["numba"], grads["numpy"], rtol=1e-5, atol=1e-5)


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match=r"im2col: backend 'fortran' is not one of"):
        kernels.im2col(np.zeros((1, 1, 2, 2)), 1, 1, 1, 0, backend="fortran")


def test_import_compiles_nothing():
    """Importing the kernel file (as the op module does) neither imports numba nor compiles."""
    import subprocess
    import sys

    code = (
        "import sys, tinyvae.kernels.im2col as k; "
        "assert 'numba' not in sys.modules; assert k._numba_kernels.cache_info().currsize == 0"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
