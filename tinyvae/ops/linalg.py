"""Matrix products: ``matmul`` (NumPy's ``@`` with batch broadcasting) and the fused ``linear`` layer."""

from __future__ import annotations

from tinyvae.autodiff import (
    Function,
    as_operand,
    check_broadcastable,
    check_same_array_module,
    is_tensor,
    sum_to_shape,
)
from tinyvae.backend import array_module


def _swap_last_two(a):
    return array_module(a).swapaxes(a, -1, -2)


class MatMul(Function):
    """Y = A @ B for A of shape (..., M, K) and B of shape (..., K, N), batch dims broadcast.

    A 1-D A is treated as a row (1, K) and a 1-D B as a column (K, 1), the added dim removed from Y, as
    NumPy does.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        """dL/dA = G Bᵀ and dL/dB = Aᵀ G  (from Y_mn = Σ_k A_mk B_kn), each summed over broadcast
        batch dims."""
        a, b = ctx.saved
        # Give vectors their matrix form, so one pair of formulas covers every case.
        a2 = a[None, :] if a.ndim == 1 else a  # (1, K)
        b2 = b[:, None] if b.ndim == 1 else b  # (K, 1)
        # Restore the dims NumPy removed from Y: B's column dim first, so that for a dot product
        # (both 1-D, Y a scalar) g becomes (1,) and then (1, 1).
        if b.ndim == 1:
            g = g[..., None]  # (..., M, 1)
        if a.ndim == 1:
            g = g[..., None, :]  # (..., 1, N)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = sum_to_shape(g @ _swap_last_two(b2), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            grad_b = sum_to_shape(_swap_last_two(a2) @ g, b2.shape).reshape(b.shape)
        return grad_a, grad_b


def matmul(a, b):
    """``a @ b`` with NumPy's rules (batch dims broadcast; 1-D operands are vectors)."""
    a, b = as_operand(a), as_operand(b)
    if not is_tensor(a) or not is_tensor(b) or a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: both operands must be arrays of at least one dimension, not scalars")
    inner_a = a.shape[-1]
    inner_b = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    if inner_a != inner_b:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} do not align: a has {inner_a} columns but b has "
            f"{inner_b} rows"
        )
    batch_a, batch_b = a.shape[:-2], b.shape[:-2]
    if batch_a != batch_b and batch_a and batch_b:
        try:
            check_broadcastable("matmul", batch_a, batch_b)
        except ValueError:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not align: their batch dimensions {batch_a} "
                f"and {batch_b} do not broadcast (sizes must be equal or 1)"
            ) from None
    if type(a.data) is not type(b.data):
        check_same_array_module("matmul", a.data, b.data)
    return MatMul.apply(a, b)


def _rows_matmul(a, W):
    """``a @ W`` for a of shape (..., in) and a 2-D W, as one 2-D GEMM over the flattened rows.

    Same result as ``a @ W``; for 3-D ``a`` (IWAE's (K, B, in) samples) NumPy's matmul would run a batched
    loop, and one GEMM was measured 5-10% faster at 1 thread and up to 2x at 2 (benchmarks/RESULTS.md,
    "Batched matmuls"). A non-contiguous ``a`` keeps NumPy's own path rather than paying for a copy.
    """
    if a.ndim <= 2 or not a.flags.c_contiguous:
        return a @ W
    return (a.reshape(-1, a.shape[-1]) @ W).reshape(*a.shape[:-1], W.shape[1])


class Linear(Function):
    """y = x W + b, x of shape (..., in), W of shape (in, out), b of shape (out,)."""

    @staticmethod
    def forward(ctx, x, W, b):
        ctx.save(x, W)
        y = _rows_matmul(x, W)  # (..., out)
        if b is not None and b.dtype == y.dtype:
            y += b  # y is a fresh array: adding in place saves a temporary
        elif b is not None:
            y = y + b
        return y

    @staticmethod
    def backward(ctx, g):
        """With rows flattened to X (n, in) and G (n, out): y_nj = Σ_i X_ni W_ij + b_j, so
        dL/dX = G Wᵀ,  dL/dW = Xᵀ G,  dL/db = Σ_n G_n."""
        x, W = ctx.saved
        grad_x = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _rows_matmul(g, W.T)  # (..., in)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            g_rows = g.reshape(-1, g.shape[-1])  # (n, out)
            if ctx.needs_input_grad[1]:
                grad_W = x.reshape(-1, x.shape[-1]).T @ g_rows  # (in, out)
            if ctx.needs_input_grad[2]:
                grad_b = g_rows.sum(axis=0)  # (out,)
        return grad_x, grad_W, grad_b


def linear(x, W, b=None):
    """The affine map ``x @ W + b`` of a dense layer, with one hand-written backward.

    ``x``: (..., in_features), any number of leading batch dims; ``W``: (in_features, out_features);
    ``b``: (out_features,) or None.
    """
    x = as_operand(x)
    if W.ndim != 2:
        raise ValueError(f"linear: W must be 2-D (in_features, out_features), got shape {W.shape}")
    if x.ndim == 0 or x.shape[-1] != W.shape[0]:
        raise ValueError(
            f"linear: x has shape {x.shape} but W expects {W.shape[0]} input features (W.shape == {W.shape})"
        )
    if b is not None and b.shape != (W.shape[1],):
        raise ValueError(
            f"linear: b has shape {b.shape} but W has {W.shape[1]} output features, so b must have "
            f"shape ({W.shape[1]},)"
        )
    if type(x.data) is not type(W.data) or (b is not None and type(b.data) is not type(W.data)):
        check_same_array_module("linear", *(t.data for t in (x, W, b) if t is not None))
    return Linear.apply(x, W, b)
