"""The three ops a small causal transformer needs beyond linear layers: ``embedding`` (a table lookup),
``layer_norm`` (Ba et al. 2016) and ``causal_attention`` (scaled dot-product attention with a causal mask,
Vaswani et al. 2017, Sec. 3.2.1).

Each is one op with its own backward rather than a chain of smaller ops: the chain would work (``getitem``,
``mean``, ``matmul``, ``log_softmax`` ...), but the fused backward is the formula a reader wants to see, and
it keeps the graph of a transformer layer a few nodes long. ``tests/test_ops_attention.py`` checks each
backward against finite differences and each forward against a plain NumPy loop.
"""

from __future__ import annotations

import math
import numbers

from tinyvae.autodiff import Function, check_same_array_module, is_tensor, sum_to_shape
from tinyvae.backend import array_module


def _describe(value):
    """``a Tensor of shape (2, 3)``, ``a list``: what a caller passed, for a message."""
    if is_tensor(value):
        return f"a Tensor of shape {value.shape}"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _require_tensor(op, name, value, expected):
    if not is_tensor(value):
        raise TypeError(
            f"{op}: {name} must be a Tensor of shape {expected}, got {_describe(value)}; wrap an array "
            f"with tv.Tensor({name})"
        )


def _swap_last_two(a):
    return array_module(a).swapaxes(a, -1, -2)


# ---------------------------------------------------------------- embedding


class Embedding(Function):
    """y[..., :] = table[indices[...], :]: row ``indices[...]`` of a (V, D) table for every index."""

    @staticmethod
    def forward(ctx, table, indices):
        ctx.indices, ctx.table_shape = indices, table.shape
        return table[indices]  # (..., D)

    @staticmethod
    def backward(ctx, g):
        """y[n] = table[i_n], so dL/dtable[v] = Σ_{n : i_n = v} g[n]: every position that read row v adds
        its gradient to it. ``add.at`` adds once per occurrence (plain ``grad[i] += g`` would keep only the
        last of repeated indices). The indices are integers: no gradient."""
        indices = ctx.indices
        xp = array_module(g)
        grad = xp.zeros(ctx.table_shape, dtype=g.dtype)  # (V, D)
        xp.add.at(grad, indices, g)
        return grad, None


def embedding(table, indices):
    """Rows of ``table`` (V, D) picked by the integer array ``indices`` (...,): a Tensor (..., D).

    The lookup of a learned vector per token (a code of a VQ-VAE, a position). Its gradient scatter-adds
    into the table, so an index used twice gets both gradients. Indices must be integers in [0, V).
    """
    _require_tensor("embedding", "table", table, "(V, D)")
    if table.ndim != 2:
        raise ValueError(f"embedding: table must be 2-D (V, D), got shape {table.shape}")
    if is_tensor(indices):
        raise TypeError(
            f"embedding: indices must be an integer array, got a Tensor of shape {indices.shape} (Tensors "
            "hold floats); pass the integer array itself"
        )
    xp = table.xp
    indices = xp.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(
            f"embedding: indices must be an integer array, got dtype {indices.dtype} (shape "
            f"{indices.shape}); positions in a table are counted in whole numbers"
        )
    vocabulary = table.shape[0]
    if indices.size:
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= vocabulary:
            raise ValueError(
                f"embedding: indices range from {low} to {high} (shape {indices.shape}) but table has "
                f"V = {vocabulary} rows (shape {table.shape}); expected indices in [0, {vocabulary})"
            )
    return Embedding.apply(table, indices)


# ---------------------------------------------------------------- layer normalisation


class LayerNorm(Function):
    """y = gain · x̂ + bias with x̂ = (x − μ) / σ, μ and σ² + ε the mean and variance (+ ε) of x over its
    last axis (Ba et al. 2016, eq. 4): every row of features is centred and scaled to unit variance, then
    given the learned scale ``gain`` and offset ``bias`` (both (D,))."""

    @staticmethod
    def forward(ctx, x, gain, bias, eps):
        xp = array_module(x)
        centred = x - x.mean(axis=-1, keepdims=True)  # (..., D)
        inv_sigma = 1.0 / xp.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
        x_hat = centred * inv_sigma  # (..., D)
        ctx.save(x_hat, inv_sigma, gain)
        ctx.bias_shape = bias.shape
        return gain * x_hat + bias

    @staticmethod
    def backward(ctx, g):
        """With ĝ = g · gain and n = D: σ² = mean((x − μ)²) + ε gives dσ/dx_j = x̂_j / n, so
        dx̂_i/dx_j = (δ_ij − 1/n − x̂_i x̂_j / n) / σ and, summing ĝ_i over i,
            dL/dx = (1/σ) (ĝ − mean(ĝ) − x̂ · mean(ĝ x̂))   (means over the last axis; exact, ε included),
            dL/dgain = Σ g x̂,   dL/dbias = Σ g   (sums over the leading axes, by sum_to_shape)."""
        x_hat, inv_sigma, gain = ctx.saved
        grad_x = grad_gain = grad_bias = None
        if ctx.needs_input_grad[0]:
            g_hat = g * gain  # (..., D)
            grad_x = inv_sigma * (
                g_hat
                - g_hat.mean(axis=-1, keepdims=True)
                - x_hat * (g_hat * x_hat).mean(axis=-1, keepdims=True)
            )
        if ctx.needs_input_grad[1]:
            grad_gain = sum_to_shape(g * x_hat, gain.shape)  # (D,)
        if ctx.needs_input_grad[2]:
            grad_bias = sum_to_shape(g, ctx.bias_shape)  # (D,)
        return grad_x, grad_gain, grad_bias


def layer_norm(x, gain, bias, eps=1e-5):
    """Normalise ``x`` (..., D) over its last axis to mean 0 and variance 1, then scale by ``gain`` (D,) and
    shift by ``bias`` (D,) (Ba et al. 2016). ``eps`` (> 0) is added to the variance, so a constant row maps
    to ``bias`` instead of 0/0."""
    for name, value, expected in (("x", x, "(..., D)"), ("gain", gain, "(D,)"), ("bias", bias, "(D,)")):
        _require_tensor("layer_norm", name, value, expected)
    if x.ndim == 0:
        raise ValueError("layer_norm: x must have at least one axis (..., D), got a scalar (shape ())")
    features = x.shape[-1]
    for name, value in (("gain", gain), ("bias", bias)):
        if value.shape != (features,):
            raise ValueError(
                f"layer_norm: {name} has shape {value.shape} but x has shape {x.shape}, so {name} must have "
                f"shape ({features},): one value per feature of the normalised last axis"
            )
    if not (isinstance(eps, numbers.Real) and not isinstance(eps, bool) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"layer_norm: eps must be a positive finite number, got {eps!r}")
    if not type(x.data) is type(gain.data) is type(bias.data):
        check_same_array_module("layer_norm", x.data, gain.data, bias.data)
    return LayerNorm.apply(x, gain, bias, eps=float(eps))


# ---------------------------------------------------------------- causal attention


def causal_mask(length, xp):
    """(L, L) booleans, True above the diagonal: the pairs (i, j > i) where position i may not look at j."""
    return xp.triu(xp.ones((length, length), dtype=bool), k=1)


class CausalAttention(Function):
    """out = A V with A = softmax(Q Kᵀ / √d + M) row by row, M_ij = −inf for j > i and 0 otherwise
    (Vaswani et al. 2017, eq. 1, with the decoder's mask of Sec. 3.2.3): position i averages the values
    of positions j ≤ i, weighted by how well its query matches their keys.

    The softmax subtracts each row's maximum before exponentiating, so no score overflows; the diagonal is
    never masked, so every row keeps at least one finite score. A (..., L, L) is saved for the backward:
    L² numbers per head, fine for the short code sequences of a VQ-VAE (L ≤ 64).
    """

    @staticmethod
    def forward(ctx, q, k, v):
        xp = array_module(q)
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = (q @ _swap_last_two(k)) * scale  # (..., L, L)
        scores = xp.where(causal_mask(q.shape[-2], xp), -xp.inf, scores).astype(scores.dtype, copy=False)
        scores -= scores.max(axis=-1, keepdims=True)  # the diagonal is finite: the max is finite
        weights = xp.exp(scores)  # exp(−inf) = 0 on the masked entries
        weights /= weights.sum(axis=-1, keepdims=True)  # A, (..., L, L), rows sum to 1
        ctx.save(q, k, v, weights)
        ctx.scale = scale
        return weights @ v  # (..., L, d)

    @staticmethod
    def backward(ctx, g):
        """With S = Q Kᵀ / √d + M, A = softmax(S), out = A V and G = dL/d(out):
            dV = Aᵀ G,   dA = G Vᵀ,
            dS = A ⊙ (dA − rowsum(dA ⊙ A))    (the softmax Jacobian ∂A_ij/∂S_il = A_ij (δ_jl − A_il)),
            dQ = dS K / √d,   dK = dSᵀ Q / √d.
        Masked entries have A_ij = 0, so dS_ij = 0 there: no gradient reaches a key or value of the future."""
        q, k, v, weights = ctx.saved
        grad_q = grad_k = grad_v = None
        if ctx.needs_input_grad[2]:
            grad_v = _swap_last_two(weights) @ g  # (..., L, d)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            grad_weights = g @ _swap_last_two(v)  # (..., L, L)
            grad_scores = weights * (grad_weights - (grad_weights * weights).sum(axis=-1, keepdims=True))
            if ctx.needs_input_grad[0]:
                grad_q = (grad_scores @ k) * ctx.scale  # (..., L, d)
            if ctx.needs_input_grad[1]:
                grad_k = (_swap_last_two(grad_scores) @ q) * ctx.scale  # (..., L, d)
        return grad_q, grad_k, grad_v


def causal_attention(q, k, v):
    """Causal scaled dot-product attention: ``q``, ``k``, ``v`` of one shape (..., L, d), e.g. (B, H, L, d)
    for B sequences of L positions and H heads; returns (..., L, d), where position i attends to positions
    j ≤ i only (so a model built with it predicts position i from the past alone)."""
    for name, value in (("q", q), ("k", k), ("v", v)):
        _require_tensor("causal_attention", name, value, "(..., L, d)")
        if value.ndim < 2:
            raise ValueError(
                f"causal_attention: {name} must have at least two axes (..., L, d), got shape {value.shape}"
            )
    for name, value in (("k", k), ("v", v)):
        if value.shape != q.shape:
            raise ValueError(
                f"causal_attention: {name} has shape {value.shape} but q has shape {q.shape}; q, k and v "
                "must have the same shape (..., L, d)"
            )
    if q.shape[-2] == 0 or q.shape[-1] == 0:
        raise ValueError(
            f"causal_attention: q has shape {q.shape}; the sequence length L and the size d must be >= 1"
        )
    if not type(q.data) is type(k.data) is type(v.data):
        check_same_array_module("causal_attention", q.data, k.data, v.data)
    return CausalAttention.apply(q, k, v)
