"""The convolution ops (``tinyvae/ops/conv.py``) and their layers (``nn.Conv2d``, ``nn.ConvTranspose2d``).

Each backward is checked against central finite differences (``tv.gradcheck``, float64, its default
tolerances: both ops are linear in x and in W separately, so the difference quotient is exact up to
rounding) over geometries drawn by hypothesis: batch 1-3, channels 1-3, kernels 1-4 on each axis, stride
1-3, padding 0-2, and images from the smallest the kernel fits (a 1 × 1 image when kh ≤ 1 + 2p) to 6 × 6,
odd and even, square or not. Both run under each CPU backend (the kernels behind them differ). Each
forward is compared with a direct loop over output pixels written here; conv_transpose2d is checked to be
the adjoint of conv2d, ⟨conv2d(x, W), y⟩ = ⟨x, conv_transpose2d(y, W)⟩ to rounding, for the same W, stride
and padding.
"""

import math

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import leaf, values

import tinyvae as tv
import tinyvae.functional as F
from tinyvae import nn
from tinyvae.gradcheck import GradcheckError
from tinyvae.ops.conv import Conv2d

# ---------------------------------------------------------------- references: direct loops


def reference_conv2d(x, W, b, stride, padding):
    """y[n, o, i, j] = b[o] + Σ W[o] ⊙ (the window of x_pad at (s·i, s·j)), one output pixel at a time."""
    n_batch, _, h, w = x.shape
    out_channels, _, kh, kw = W.shape
    padded = numpy.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h, out_w = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    y = numpy.zeros((n_batch, out_channels, out_h, out_w))
    for n in range(n_batch):
        for o in range(out_channels):
            for i in range(out_h):
                for j in range(out_w):
                    window = padded[n, :, stride * i : stride * i + kh, stride * j : stride * j + kw]
                    y[n, o, i, j] = numpy.sum(W[o] * window) + (0.0 if b is None else b[o])
    return y


def reference_conv_transpose2d(x, W, b, stride, padding):
    """Every input pixel x[n, c, h, w] stamps x[n, c, h, w] · W[c] (C_out, kh, kw) onto the padded output at
    (s·h, s·w); stamps add; then the padding is cut off every side."""
    n_batch, in_channels, h, w = x.shape
    _, out_channels, kh, kw = W.shape
    full_h, full_w = (h - 1) * stride + kh, (w - 1) * stride + kw
    y = numpy.zeros((n_batch, out_channels, full_h, full_w))
    for n in range(n_batch):
        for c in range(in_channels):
            for i in range(h):
                for j in range(w):
                    y[n, :, stride * i : stride * i + kh, stride * j : stride * j + kw] += (
                        x[n, c, i, j] * W[c]
                    )
    y = y[:, :, padding : full_h - padding, padding : full_w - padding]
    return y if b is None else y + b[None, :, None, None]


# ---------------------------------------------------------------- drawn geometries


@st.composite
def geometries(draw, max_side=6):
    """(N, C, O, H, W, kh, kw, stride, padding) with the kernel fitting the padded image."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * padding), max(1, kh - 2 * padding) + max_side - 1))
    w = draw(st.integers(max(1, kw - 2 * padding), max(1, kw - 2 * padding) + max_side - 1))
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return n, c, o, h, w, kh, kw, stride, padding


@st.composite
def conv_cases(draw):
    """Leaves x (N, C, H, W), W (O, C, kh, kw), b (O,) or None, and (stride, padding) for conv2d."""
    n, c, o, h, w, kh, kw, stride, padding = draw(geometries())
    x, W = leaf(draw(values((n, c, h, w)))), leaf(draw(values((o, c, kh, kw))))
    b = leaf(draw(values((o,)))) if draw(st.booleans()) else None
    return x, W, b, stride, padding


def _smallest_output(kernel, stride, padding):
    """The least H' ≥ 1 for which conv_transpose2d's output (H' − 1)·s − 2p + k is at least 1."""
    return max(1, math.ceil((2 * padding - kernel + 1) / stride) + 1)


@st.composite
def transpose_cases(draw):
    """Leaves x (N, C_in, H, W), W (C_in, C_out, kh, kw), b (C_out,) or None, (stride, padding): an input
    of size H' ≥ 1 with an output (H' − 1)·s − 2p + kh ≥ 1 (size-1 inputs and outputs included)."""
    n, c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    sizes = [_smallest_output(k, stride, padding) + draw(st.integers(0, 3)) for k in (kh, kw)]
    x, W = leaf(draw(values((n, c_in, *sizes)))), leaf(draw(values((c_in, c_out, kh, kw))))
    b = leaf(draw(values((c_out,)))) if draw(st.booleans()) else None
    return x, W, b, stride, padding


def _conv(stride, padding):
    return lambda x, W, b=None: F.conv2d(x, W, b, stride=stride, padding=padding)


def _conv_transpose(stride, padding):
    return lambda x, W, b=None: F.conv_transpose2d(x, W, b, stride=stride, padding=padding)


def _leaves(x, W, b):
    return [x, W] if b is None else [x, W, b]


# ---------------------------------------------------------------- conv2d


@given(case=conv_cases())
def test_conv2d_forward_matches_a_direct_loop(case):
    x, W, b, stride, padding = case
    y = F.conv2d(x, W, b, stride=stride, padding=padding)
    expected = reference_conv2d(x.data, W.data, None if b is None else b.data, stride, padding)
    assert y.shape == expected.shape
    numpy.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)


@given(case=conv_cases())
def test_conv2d_gradients(case, backend):
    """dX = col2im(W₂ᵀ G), dW = G colsᵀ, db = Σ G, under each CPU backend's im2col/col2im."""
    x, W, b, stride, padding = case
    assert tv.gradcheck(_conv(stride, padding), _leaves(x, W, b), name="conv2d")


# ---------------------------------------------------------------- conv_transpose2d


@given(case=transpose_cases())
def test_conv_transpose2d_forward_matches_a_direct_loop(case):
    x, W, b, stride, padding = case
    y = F.conv_transpose2d(x, W, b, stride=stride, padding=padding)
    expected = reference_conv_transpose2d(x.data, W.data, None if b is None else b.data, stride, padding)
    assert y.shape == expected.shape
    numpy.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)


@given(case=transpose_cases())
def test_conv_transpose2d_gradients(case, backend):
    """dX = W₂ im2col(g), dW = X im2col(g)ᵀ, db = Σ g, under each CPU backend's im2col/col2im."""
    x, W, b, stride, padding = case
    assert tv.gradcheck(_conv_transpose(stride, padding), _leaves(x, W, b), name="conv_transpose2d")


@given(geometry=geometries(), data=st.data())
def test_conv_transpose2d_is_the_adjoint_of_conv2d(geometry, data):
    """⟨conv2d(x, W), y⟩ = ⟨x, conv_transpose2d(y, W)⟩ for the same W (O, C, kh, kw), stride and padding,
    to rounding (1e-12 of Σ|terms|). The image is H = (H' − 1)·s − 2p + kh for a drawn H', so every row of x
    is read by some window and conv_transpose2d maps conv2d's output size H' back to H (PyTorch needs
    ``output_padding`` for the other sizes)."""
    n, c, o, _, _, kh, kw, stride, padding = geometry
    out_h, out_w = (data.draw(st.integers(0, 3)) + _smallest_output(k, stride, padding) for k in (kh, kw))
    h, w = (out_h - 1) * stride - 2 * padding + kh, (out_w - 1) * stride - 2 * padding + kw
    x, W = data.draw(values((n, c, h, w))), data.draw(values((o, c, kh, kw)))
    y = data.draw(values((n, o, out_h, out_w)))
    forward = F.conv2d(tv.Tensor(x), tv.Tensor(W), stride=stride, padding=padding).data
    back = F.conv_transpose2d(tv.Tensor(y), tv.Tensor(W), stride=stride, padding=padding).data
    assert forward.shape == y.shape and back.shape == x.shape
    left, right = float(numpy.sum(forward * y)), float(numpy.sum(x * back))
    assert abs(left - right) <= 1e-12 * (float(numpy.sum(numpy.abs(forward * y))) + 1.0)


def test_bias_gradient_is_the_sum_over_batch_and_pixels():
    """d⟨g, y⟩/db[o] = Σ_{n,i,j} g[n, o, i, j] for both ops (exactly: the same float64 sum)."""
    rng = numpy.random.default_rng(3)
    x = tv.Tensor(rng.standard_normal((2, 3, 5, 5)))
    for op, W in (
        (_conv(2, 1), rng.standard_normal((4, 3, 3, 3))),
        (_conv_transpose(2, 1), rng.standard_normal((3, 4, 3, 3))),
    ):
        b = leaf(numpy.zeros(4))
        y = op(x, tv.Tensor(W), b)
        g = rng.standard_normal(y.shape)
        y.backward(g)
        numpy.testing.assert_allclose(b.grad, g.sum(axis=(0, 2, 3)), rtol=1e-14)


def test_the_issue_network_sizes_and_float32():
    """28 → 14 → 7 with Conv(4, s2, p1) and back 7 → 14 → 28 with ConvTranspose(4, s2, p1), in float32
    (outputs and gradients keep the parameters' dtype)."""
    rng = numpy.random.default_rng(0)
    x = tv.Tensor(rng.standard_normal((2, 1, 28, 28)).astype(numpy.float32))
    layers = [
        nn.Conv2d(1, 32, 4, stride=2, padding=1, rng=rng),
        nn.Conv2d(32, 64, 4, stride=2, padding=1, rng=rng),
        nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1, rng=rng),
        nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1, rng=rng),
    ]
    shapes = []
    y = x
    for layer in layers:
        y = layer(y)
        shapes.append(y.shape[1:])
    assert shapes == [(32, 14, 14), (64, 7, 7), (32, 14, 14), (1, 28, 28)]
    assert y.dtype == numpy.float32
    (y * y).sum().backward()
    assert all(
        p.grad.dtype == numpy.float32 and p.grad.shape == p.shape for l in layers for p in l.parameters()
    )


def test_gradcheck_catches_a_conv2d_backward_that_overwrites_overlaps(monkeypatch):
    """A backward whose col2im *assigns* each window instead of adding it (overlapping windows then keep
    only the last one, a plausible slip) is caught: kernel 4 with stride 2 overlaps. The correct backward
    passes on the same inputs."""
    rng = numpy.random.default_rng(4)
    x, W = leaf(rng.standard_normal((1, 2, 6, 6))), leaf(rng.standard_normal((2, 2, 4, 4)))
    assert tv.gradcheck(_conv(2, 1), [x, W])

    def wrong_backward(ctx, g):
        cols, W = ctx.saved
        kh, kw, stride, padding = ctx.geometry
        n, c, h, w = ctx.x_shape
        flat_g = numpy.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(g.shape[1], -1)
        grad_cols = (W.reshape(W.shape[0], -1).T @ flat_g).reshape(c, kh, kw, n, *g.shape[2:])
        padded = numpy.zeros((n, c, h + 2 * padding, w + 2 * padding))
        for ki in range(kh):
            for kj in range(kw):
                rows = slice(ki, ki + stride * (g.shape[2] - 1) + 1, stride)
                columns = slice(kj, kj + stride * (g.shape[3] - 1) + 1, stride)
                padded[:, :, rows, columns] = grad_cols[:, ki, kj].transpose(1, 0, 2, 3)  # = instead of +=
        grad_x = padded[:, :, padding : padding + h, padding : padding + w]
        return grad_x, (flat_g @ cols.T).reshape(W.shape), None

    monkeypatch.setattr(Conv2d, "backward", staticmethod(wrong_backward))
    with pytest.raises(GradcheckError, match="conv2d"):
        tv.gradcheck(_conv(2, 1), [x, W], name="conv2d")


# ---------------------------------------------------------------- errors name the argument


def _t(*shape):
    return tv.Tensor(numpy.zeros(shape))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 2, 3, 3)),
            r"x has shape \(2, 3, 5, 5\) \(3 channels\) .* expects 2 input",
        ),
        (
            lambda: F.conv2d(_t(3, 5, 5), _t(4, 3, 3, 3)),
            r"x must be 4-D \(N, C, H, W\), got shape \(3, 5, 5\)",
        ),
        (
            lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3)),
            r"W must be 4-D \(O, C, kh, kw\), got shape \(4, 3, 3\)",
        ),
        (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), _t(3)), r"b has shape \(3,\) .* shape \(4,\)"),
        (
            lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), stride=0),
            r"stride must be a positive int .* got 0",
        ),
        (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), stride=1.5), r"stride must be a positive int"),
        (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), stride=(2, 2)), r"stride .* got \(2, 2\)"),
        (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), padding=-1), r"padding must be a non-negative int"),
        (
            lambda: F.conv2d(_t(2, 3, 2, 5), _t(4, 3, 3, 3)),
            r"kernel \(3, 3\) .* larger than the padded input \(2, 5\) \(x has shape \(2, 3, 2, 5\), "
            r"padding 0\)",
        ),
        (lambda: F.conv2d(_t(2, 3, 0, 5), _t(4, 3, 1, 1)), r"every size must be at least 1"),
        (
            lambda: F.conv_transpose2d(_t(2, 3, 5, 5), _t(4, 2, 3, 3)),
            r"x has shape \(2, 3, 5, 5\) \(3 channels\) .* expects 4 input channels \(W is \(C_in, C_out",
        ),
        (lambda: F.conv_transpose2d(_t(2, 4, 5, 5), _t(4, 2, 3, 3), _t(4)), r"b has shape \(4,\) .* \(2,\)"),
        (
            lambda: F.conv_transpose2d(_t(1, 1, 1, 1), _t(1, 1, 2, 2), padding=1),
            r"output of size \(0, 0\) .* expected both at least 1",
        ),
        (lambda: F.conv_transpose2d(_t(1, 1, 2, 2), _t(1, 1, 2, 2), padding=True), r"padding must be"),
    ],
)
def test_errors_name_the_argument_and_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- layers


def test_layers_initialise_like_linear():
    """Conv2d: U(±√(3/fan_in)), fan_in = C_in·kh·kw; ConvTranspose2d: fan_in = C_in·⌈kh/s⌉·⌈kw/s⌉, the
    terms an output sums. Biases start at zero; the weights fill the range (max close to the limit)."""
    conv = nn.Conv2d(8, 16, (3, 5), rng=0)
    assert conv.weight.shape == (16, 8, 3, 5) and conv.weight.dtype == tv.tensor.DEFAULT_DTYPE
    limit = math.sqrt(3 / (8 * 3 * 5))
    assert 0.95 * limit < numpy.abs(conv.weight.data).max() <= limit
    deconv = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1, rng=0)
    assert deconv.weight.shape == (64, 32, 4, 4)
    limit = math.sqrt(3 / (64 * 2 * 2))
    assert 0.95 * limit < numpy.abs(deconv.weight.data).max() <= limit
    for layer in (conv, deconv):
        numpy.testing.assert_array_equal(layer.bias.data, 0.0)
    assert nn.Conv2d(1, 2, 3, bias=False, rng=0).bias is None
    assert [name for name, _ in deconv.named_parameters()] == ["weight", "bias"]


def test_layers_keep_variance_of_a_unit_input():
    """The point of the fan-in rule: with unit-variance inputs, interior outputs of both layers have
    variance close to 1 (one draw of 2,000+ outputs: within 25%)."""
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((16, 32, 14, 14))
    y = nn.Conv2d(32, 64, 4, stride=2, padding=1, rng=rng, dtype=numpy.float64)(x).data
    assert 0.75 < y[:, :, 1:-1, 1:-1].var() < 1.25
    x = rng.standard_normal((16, 64, 7, 7))
    y = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1, rng=rng, dtype=numpy.float64)(x).data
    assert 0.75 < y[:, :, 2:-2, 2:-2].var() < 1.25


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: nn.Conv2d(0, 4, 3), r"Conv2d: in_channels must be a positive integer, got 0"),
        (lambda: nn.Conv2d(2, 4.0, 3), r"Conv2d: out_channels must be a positive integer, got 4.0"),
        (lambda: nn.Conv2d(2, 4, (3, 0)), r"Conv2d: kernel_size must be a positive integer, got 0"),
        (lambda: nn.Conv2d(2, 4, (3, 3, 3)), r"kernel_size must be an int or a pair"),
        (lambda: nn.ConvTranspose2d(2, 4, 3, stride=0), r"ConvTranspose2d: stride must be a positive"),
        (lambda: nn.ConvTranspose2d(2, 4, 3, padding=-1), r"padding must be a non-negative integer"),
    ],
)
def test_layer_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()
