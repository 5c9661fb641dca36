"""Elementwise log-densities of the decoder's likelihoods, computed in log space.

Both return one value per element (sum over the data dims to get log p(x | z) per example).
"""

from __future__ import annotations

import math

from tinyvae.autodiff import Function, sum_to_shape
from tinyvae.backend import array_module
from tinyvae.kernels import bernoulli_parts
from tinyvae.tensor import as_operand

LOG_2PI = math.log(2 * math.pi)


def _shape_of(ctx, i):
    return ctx.inputs[i].shape


class GaussianLogProb(Function):
    """log N(x; μ, σ²) = −½ [ log 2π + logvar + (x − μ)² e^(−logvar) ], elementwise."""

    @staticmethod
    def forward(ctx, x, mu, logvar):
        xp = array_module(x, mu, logvar)
        inv_var = xp.exp(-logvar)
        diff = x - mu
        ctx.save(diff, inv_var)
        return -0.5 * (LOG_2PI + logvar + diff * diff * inv_var)

    @staticmethod
    def backward(ctx, g):
        """With d = x − μ and r = e^(−logvar) = 1/σ²:
        d/dx = −d r,   d/dμ = d r,   d/dlogvar = ½ (d² r − 1)."""
        diff, inv_var = ctx.saved
        scaled_diff = diff * inv_var
        grads = [None, None, None]
        if ctx.needs_input_grad[0]:
            grads[0] = sum_to_shape(-g * scaled_diff, _shape_of(ctx, 0))
        if ctx.needs_input_grad[1]:
            grads[1] = sum_to_shape(g * scaled_diff, _shape_of(ctx, 1))
        if ctx.needs_input_grad[2]:
            grads[2] = sum_to_shape(0.5 * g * (diff * scaled_diff - 1), _shape_of(ctx, 2))
        return tuple(grads)


def gaussian_log_prob(x, mu, logvar):
    """Elementwise log-density of x under N(mu, exp(logvar)); shapes broadcast."""
    return GaussianLogProb.apply(as_operand(x), as_operand(mu), as_operand(logvar))


class BernoulliLogProb(Function):
    """log Bern(x; σ(l)) = x log σ(l) + (1 − x) log(1 − σ(l)) = x l − softplus(l), elementwise.

    The right-hand form never takes log(σ(l)), which is −inf in floating point once σ(l) rounds to 0
    (l ≈ −104 in float32); softplus(l) = max(l, 0) + log1p(e^(−|l|)) is finite for every finite l.
    x may be any value in [0, 1] (the same formula is the binary cross-entropy with soft targets).

    This op runs on every pixel of every batch, so the arithmetic around its exp and log1p is one fused
    pass (kernels/bernoulli_parts.py: NumPy reference, numba, CuPy), while exp and log1p stay NumPy's SIMD
    ufuncs.
    """

    @staticmethod
    def forward(ctx, logits, x):
        xp = array_module(logits, x)
        e = xp.empty(logits.shape, dtype=logits.dtype)  # an array even for 0-d logits, so out= works
        xp.abs(logits, out=e)
        xp.negative(e, out=e)
        xp.exp(e, out=e)  # e = exp(−|l|) ∈ (0, 1]: never overflows
        log_prob = bernoulli_parts.log_prob_terms(logits, x, xp.log1p(e))  # x l − max(l, 0) − log1p(e)
        ctx.save(logits, x, e)
        return log_prob

    @staticmethod
    def backward(ctx, g):
        """d/dl = x − σ(l) (since d softplus(l)/dl = σ(l));  d/dx = l.

        σ(l) is computed from the forward's e = exp(−|l|) with full relative precision (σ(−100) = 3.7e−44,
        not 0): see :func:`stable_sigmoid`."""
        logits, x, e = ctx.saved
        grads = [None, None]
        if ctx.needs_input_grad[0]:
            grad = bernoulli_parts.logit_gradient(logits, x, e, g)  # (x − σ(l)) g, in g's (broadcast) shape
            grads[0] = sum_to_shape(grad, _shape_of(ctx, 0))
        if ctx.needs_input_grad[1]:
            grads[1] = sum_to_shape(g * logits, _shape_of(ctx, 1))
        return tuple(grads)


def bernoulli_log_prob(logits, x):
    """Elementwise log-probability of x ∈ [0, 1] under Bernoulli(sigmoid(logits)); shapes broadcast."""
    return BernoulliLogProb.apply(as_operand(logits), as_operand(x))
