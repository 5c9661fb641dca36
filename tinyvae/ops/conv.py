"""2-D convolutions: ``conv2d`` and its adjoint ``conv_transpose2d``, with PyTorch's layouts and output sizes.

Both are one matrix product once the image is unfolded into columns (``kernels/im2col.py``):

    cols = im2col(x)                 (C·kh·kw, N·H'·W'): column (n, i, j) holds the window output (i, j) reads
    Y = W₂ · cols,  W₂ = W.reshape(O, C·kh·kw)          (O, N·H'·W'), then laid out as (N, O, H', W')

so a convolution is a GEMM that BLAS runs at its full speed, at the cost of copying each input pixel into
up to kh·kw columns. ``conv_transpose2d`` ("deconvolution", the decoder's upsampling layer) runs the same
GEMM backwards: it *is* the input-gradient of conv2d, x ↦ col2im(W₂ᵀ x), so its forward is conv2d's input
backward and its backward is conv2d's forward. Measured against a direct numba convolution at the layers of
issue 14's network (batch 128, 2-vCPU Zen 4): 23-32x faster over the four layers, forward and backward
(benchmarks/RESULTS.md, "Convolutions: im2col + GEMM vs direct numba").

``tests/test_ops_conv.py`` checks both backwards against finite differences, both forwards against plain
loops, and that conv_transpose2d is exactly the adjoint of conv2d.
"""

from __future__ import annotations

import numbers

from tinyvae.autodiff import Function, as_tensor, check_same_array_module
from tinyvae.backend import array_module
from tinyvae.kernels.im2col import col2im, im2col, output_size


def _flat_channels(a):
    """(N, C, H, W) → (C, N·H·W): the channel-major layout of a GEMM operand (a copy)."""
    return array_module(a).ascontiguousarray(a.transpose(1, 0, 2, 3)).reshape(a.shape[1], -1)


def _image(flat, n, h, w):
    """(C, N·H·W) → (N, C, H, W), C-contiguous (the next op's kernels want contiguous arrays)."""
    xp = array_module(flat)
    return xp.ascontiguousarray(flat.reshape(flat.shape[0], n, h, w).transpose(1, 0, 2, 3))


# ---------------------------------------------------------------- conv2d


class Conv2d(Function):
    """y[n, o, i, j] = b[o] + Σ_{c, ki, kj} W[o, c, ki, kj] · x_pad[n, c, s·i + ki, s·j + kj]
    for x (N, C, H, W), W (O, C, kh, kw), b (O,); x_pad is x with p zeros on every side. As a GEMM:
    Y = W₂ · cols with W₂ = W.reshape(O, C·kh·kw) and cols = im2col(x)."""

    @staticmethod
    def forward(ctx, x, W, b, stride, padding):
        n, _, h, w = x.shape
        out_channels, _, kh, kw = W.shape
        out_h, out_w = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
        cols = im2col(x, kh, kw, stride, padding)  # (C·kh·kw, N·H'·W')
        flat_W = W.reshape(out_channels, -1)  # (O, C·kh·kw)
        y = flat_W @ cols  # (O, N·H'·W')
        if b is not None and b.dtype == y.dtype:
            y += b[:, None]  # y is a fresh array: adding in place saves a temporary
        elif b is not None:
            y = y + b[:, None]
        ctx.save(cols, W)
        ctx.x_shape, ctx.geometry = x.shape, (kh, kw, stride, padding)
        return _image(y, n, out_h, out_w)  # (N, O, H', W')

    @staticmethod
    def backward(ctx, g):
        """With G = dL/dY laid out (O, N·H'·W') like Y = W₂ · cols (the Linear rule, transposed):
            dL/dW₂ = G · colsᵀ   (reshaped to (O, C, kh, kw)),   dL/db = Σ_{n,i,j} G,
            dL/dcols = W₂ᵀ · G,  dL/dx = col2im(W₂ᵀ · G)
        since x ↦ cols copies each pixel into every column whose window covers it, and the adjoint of a copy
        into many places is the sum over them: col2im adds the overlapping windows back (and drops the
        padding, which is a constant)."""
        cols, W = ctx.saved
        kh, kw, stride, padding = ctx.geometry
        flat_g = _flat_channels(g)  # (O, N·H'·W')
        grad_x = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_cols = W.reshape(W.shape[0], -1).T @ flat_g  # (C·kh·kw, N·H'·W')
            grad_x = col2im(grad_cols, ctx.x_shape, kh, kw, stride, padding)  # (N, C, H, W)
        if ctx.needs_input_grad[1]:
            grad_W = (flat_g @ cols.T).reshape(W.shape)  # (O, C, kh, kw)
        if ctx.needs_input_grad[2]:
            grad_b = flat_g.sum(axis=1)  # (O,)
        return grad_x, grad_W, grad_b


def conv2d(x, W, b=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in every deep-learning library), PyTorch's ``conv2d`` layout.

    ``x``: (N, C, H, W); ``W``: (O, C, kh, kw); ``b``: (O,) or None; ``stride`` a positive int and
    ``padding`` a non-negative int, the same for both axes (zeros are padded). Returns (N, O, H', W') with
    H' = (H + 2·padding − kh) // stride + 1 and likewise W' (trailing rows that no full window reaches are
    skipped, as in PyTorch).
    """
    x, W, b = _check_tensors("conv2d", x, W, b, weight_layout="(O, C, kh, kw)")
    stride, padding = _check_geometry("conv2d", stride, padding)
    if x.shape[1] != W.shape[1]:
        raise ValueError(
            f"conv2d: x has shape {x.shape} ({x.shape[1]} channels) but W has shape {W.shape}, which expects "
            f"{W.shape[1]} input channels (W is (O, C, kh, kw))"
        )
    _check_bias("conv2d", b, W, W.shape[0], "O = W.shape[0]")
    n, _, h, w = x.shape
    _, _, kh, kw = W.shape
    if kh > h + 2 * padding or kw > w + 2 * padding:
        raise ValueError(
            f"conv2d: the kernel ({kh}, {kw}) of W (shape {W.shape}) is larger than the padded input "
            f"({h + 2 * padding}, {w + 2 * padding}) (x has shape {x.shape}, padding {padding}); expected "
            f"kh <= H + 2·padding and kw <= W + 2·padding"
        )
    return Conv2d.apply(x, W, b, stride=stride, padding=padding)


# ---------------------------------------------------------------- conv_transpose2d


class ConvTranspose2d(Function):
    """y = col2im(W₂ᵀ · X) + b for x (N, C_in, H, W), W (C_in, C_out, kh, kw), b (C_out,), with
    X = x laid out (C_in, N·H·W) and W₂ = W.reshape(C_in, C_out·kh·kw): each input pixel stamps its
    kernel-weighted copy of W onto the output at stride s, overlapping stamps add, and p rows and columns
    are cut from every side. This is conv2d's input-gradient with W read as a conv2d weight (O = C_in,
    C = C_out), so the output size (H − 1)·s − 2p + kh is the input size conv2d maps back to H."""

    @staticmethod
    def forward(ctx, x, W, b, stride, padding):
        n, in_channels, h, w = x.shape
        _, out_channels, kh, kw = W.shape
        out_h, out_w = (h - 1) * stride - 2 * padding + kh, (w - 1) * stride - 2 * padding + kw
        flat_x = _flat_channels(x)  # (C_in, N·H·W)
        cols = W.reshape(in_channels, -1).T @ flat_x  # (C_out·kh·kw, N·H·W)
        y = col2im(cols, (n, out_channels, out_h, out_w), kh, kw, stride, padding)  # (N, C_out, H_out, W_out)
        if b is not None and b.dtype == y.dtype:
            y += b[:, None, None]  # y is a fresh array: adding in place saves a temporary
        elif b is not None:
            y = y + b[:, None, None]
        ctx.save(flat_x, W)
        ctx.x_shape, ctx.geometry = x.shape, (kh, kw, stride, padding)
        return y

    @staticmethod
    def backward(ctx, g):
        """y = col2im(W₂ᵀ X) is linear in X and in W₂; its adjoint in X is conv2d's forward. With
        G_cols = im2col(g) (C_out·kh·kw, N·H·W) (the adjoint of col2im):
            dL/dX = W₂ · G_cols   (laid out back to (N, C_in, H, W)),
            dL/dW₂ = X · G_colsᵀ  (reshaped to (C_in, C_out, kh, kw)),   dL/db = Σ_{n,h,w} g."""
        flat_x, W = ctx.saved
        kh, kw, stride, padding = ctx.geometry
        n, in_channels, h, w = ctx.x_shape
        grad_x = grad_W = grad_b = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            grad_cols = im2col(g, kh, kw, stride, padding)  # (C_out·kh·kw, N·H·W)
            if ctx.needs_input_grad[0]:
                grad_x = _image(W.reshape(in_channels, -1) @ grad_cols, n, h, w)  # (N, C_in, H, W)
            if ctx.needs_input_grad[1]:
                grad_W = (flat_x @ grad_cols.T).reshape(W.shape)  # (C_in, C_out, kh, kw)
        if ctx.needs_input_grad[2]:
            grad_b = g.sum(axis=(0, 2, 3))  # (C_out,)
        return grad_x, grad_W, grad_b


def conv_transpose2d(x, W, b=None, stride=1, padding=0):
    """Transposed 2-D convolution, PyTorch's ``conv_transpose2d`` layout (no ``output_padding``).

    ``x``: (N, C_in, H, W); ``W``: (C_in, C_out, kh, kw); ``b``: (C_out,) or None. Returns
    (N, C_out, (H − 1)·stride − 2·padding + kh, (W − 1)·stride − 2·padding + kw): the adjoint of
    ``conv2d(·, W, stride=stride, padding=padding)``, so it maps conv2d's output size back to an input size
    (e.g. 7 → 14 with kernel 4, stride 2, padding 1).
    """
    x, W, b = _check_tensors("conv_transpose2d", x, W, b, weight_layout="(C_in, C_out, kh, kw)")
    stride, padding = _check_geometry("conv_transpose2d", stride, padding)
    if x.shape[1] != W.shape[0]:
        raise ValueError(
            f"conv_transpose2d: x has shape {x.shape} ({x.shape[1]} channels) but W has shape {W.shape}, "
            f"which expects {W.shape[0]} input channels (W is (C_in, C_out, kh, kw))"
        )
    _check_bias("conv_transpose2d", b, W, W.shape[1], "C_out = W.shape[1]")
    _, _, h, w = x.shape
    _, _, kh, kw = W.shape
    out_h, out_w = (h - 1) * stride - 2 * padding + kh, (w - 1) * stride - 2 * padding + kw
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"conv_transpose2d: x of shape {x.shape} with W of shape {W.shape}, stride {stride} and padding "
            f"{padding} gives an output of size ({out_h}, {out_w}) = ((H − 1)·stride − 2·padding + kh, ...); "
            "expected both at least 1: use less padding or a larger kernel"
        )
    return ConvTranspose2d.apply(x, W, b, stride=stride, padding=padding)


# ---------------------------------------------------------------- argument checks


def _check_tensors(op, x, W, b, weight_layout):
    """Tensors from x, W and b (arrays become constants, as in ``linear``), refusing a wrong number of
    axes, an empty size or a mix of NumPy and CuPy arrays."""
    x, W = as_tensor(x), as_tensor(W)
    b = None if b is None else as_tensor(b)
    for name, value, layout in (("x", x, "(N, C, H, W)"), ("W", W, weight_layout)):
        if value.ndim != 4:
            raise ValueError(f"{op}: {name} must be 4-D {layout}, got shape {value.shape}")
    if 0 in x.shape + W.shape:
        raise ValueError(
            f"{op}: x has shape {x.shape} and W has shape {W.shape}; every size must be at least 1"
        )
    arrays = [t.data for t in (x, W, b) if t is not None]
    if any(type(a) is not type(arrays[0]) for a in arrays):
        check_same_array_module(op, *arrays)
    return x, W, b


def _check_geometry(op, stride, padding):
    for name, value, low, rule in (
        ("stride", stride, 1, "a positive"),
        ("padding", padding, 0, "a non-negative"),
    ):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
            raise ValueError(f"{op}: {name} must be {rule} int (the same for both axes), got {value!r}")
    return int(stride), int(padding)


def _check_bias(op, b, W, channels, meaning):
    if b is not None and b.shape != (channels,):
        raise ValueError(
            f"{op}: b has shape {b.shape} but W has shape {W.shape}, so b must have shape ({channels},) "
            f"({meaning}, one bias per output channel)"
        )
