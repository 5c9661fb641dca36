"""Elementwise log-densities of the decoder's likelihoods, computed in log space.

Both return one value per element (sum over the data dims to get log p(x | z) per example).
"""

from __future__ import annotations

import contextlib
import math

import numpy

from tinyvae.autodiff import Function, as_operand, check_broadcastable, sum_to_shape
from tinyvae.backend import array_module
from tinyvae.kernels import bernoulli_parts

LOG_2PI = math.log(2 * math.pi)

# The target check reads x's IEEE-754 bit patterns as unsigned integers. For a float whose sign bit is clear
# (+0.0 up to +inf, then NaN), that integer order *is* the numeric order; any value with the sign bit set
# (every negative number, and −0.0) reads as a larger integer than all of them. So one integer max answers
# "is every value in [+0, 1]?" (max ≤ bits(1.0)): one pass instead of a float min and max. At (128, 784)
# float32, on the 2-core AMD EPYC (Zen 4) of benchmarks/RESULTS.md: 2.7 µs, against 7.5 µs for x.min() and
# x.max() (and ~90 µs for the whole forward). (The same trick on |l| finds infinite logits: see
# kernels/bernoulli_parts.py, exp_minus_abs.)
_UNSIGNED = {numpy.dtype(numpy.float32): numpy.uint32, numpy.dtype(numpy.float64): numpy.uint64}
_ONE_BITS = {dtype: int(numpy.array(1.0, dtype).view(u)) for dtype, u in _UNSIGNED.items()}


def _ignore_invalid(xp):
    """Silence NumPy's "invalid value" warning for ∞ − ∞ that the caller replaces (CuPy never warns)."""
    errstate = getattr(xp, "errstate", None)
    return errstate(invalid="ignore") if errstate is not None else contextlib.nullcontext()


def _largest_bits(a):
    """max over ``a`` of its bit patterns read as unsigned integers (see the comment above)."""
    return int(a.view(_UNSIGNED[a.dtype]).max())


def _check_targets(x):
    """Refuse Bernoulli targets outside [0, 1] (or NaN) with a ValueError that says what was found.

    x log σ(l) + (1 − x) log(1 − σ(l)) is a log-probability only for x in [0, 1]; for pixels in [0, 255]
    it is a large, meaningless number and training would go on silently. This is a check on *data*: a
    target that requires a gradient is a variable, for which x l − softplus(l) is a smooth (linear)
    function of any real x, and whose finite-difference check steps just outside [0, 1] at the ends.
    The quick test is one integer max; only data that fails it (or holds −0.0, which is fine) pays for
    the exact float min and max."""
    if isinstance(x, float):  # a Python number (as_operand keeps those as floats)
        lo = hi = x
    else:
        data = x.data
        if x.requires_grad or data.size == 0 or _largest_bits(data) <= _ONE_BITS[data.dtype]:
            return
        lo, hi = float(data.min()), float(data.max())
    if lo >= 0 and hi <= 1:
        return
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(
            "bernoulli_log_prob: the targets x contain NaN; a Bernoulli target is a probability in [0, 1]"
        )
    raise ValueError(
        f"bernoulli_log_prob: the targets x must lie in [0, 1] (binary pixels, or probabilities as soft "
        f"targets), got values from {lo!r} to {hi!r}; scale the data into [0, 1] (e.g. pixels / 255) or "
        "use the Gaussian likelihood for real-valued data"
    )


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
            grads[0] = sum_to_shape(-g * scaled_diff, ctx.inputs[0].shape)
        if ctx.needs_input_grad[1]:
            grads[1] = sum_to_shape(g * scaled_diff, ctx.inputs[1].shape)
        if ctx.needs_input_grad[2]:
            grads[2] = sum_to_shape(0.5 * g * (diff * scaled_diff - 1), ctx.inputs[2].shape)
        return tuple(grads)


def gaussian_log_prob(x, mu, logvar):
    """Elementwise log-density of x under N(mu, exp(logvar)); shapes broadcast (a ValueError names them)."""
    x, mu, logvar = as_operand(x), as_operand(mu), as_operand(logvar)
    shapes = tuple(numpy.shape(v) for v in (x, mu, logvar))  # () for a Python number
    if len({s for s in shapes if s}) > 1:  # the common case, equal shapes and scalars, skips the check
        check_broadcastable("gaussian_log_prob", *shapes, names=("x", "mu", "logvar"))
    return GaussianLogProb.apply(x, mu, logvar)


class BernoulliLogProb(Function):
    """log Bern(x; σ(l)) = x log σ(l) + (1 − x) log(1 − σ(l)) = x l − softplus(l), elementwise.

    The right-hand form never takes log(σ(l)), which is −inf in floating point once σ(l) rounds to 0
    (l ≈ −104 in float32); softplus(l) = max(l, 0) + log1p(e^(−|l|)) is finite for every finite l.
    x may be any value in [0, 1] (the same formula is the binary cross-entropy with soft targets); other
    targets are refused by :func:`bernoulli_log_prob`.

    Infinite logits: σ(+inf) = 1 and σ(−inf) = 0 exactly, so log p is 0 when x equals σ(l) (the model is
    certain and right) and −inf otherwise (certain and wrong, soft targets included, with 0 · log 0 = 0);
    x l − softplus(l) would be ∞ − ∞ there, so those entries are set from this rule. Only a call that has
    one pays for the fix.

    This op runs on every pixel of every batch, so it runs on the fast path in kernels/bernoulli_parts.py
    (NumPy reference, numba, CuPy; each tested against this formula): e = exp(−|l|) in one buffer, and the
    arithmetic around NumPy's SIMD exp and log1p as one fused pass each way under numba.
    """

    @staticmethod
    def forward(ctx, logits, x):
        xp = array_module(logits, x)
        e, finite = bernoulli_parts.exp_minus_abs(logits)  # e = exp(−|l|) ∈ [0, 1]: never overflows
        # log p = x l − softplus(l), with softplus(l) = max(l, 0) + log1p(e): one fused pass under numba.
        with contextlib.nullcontext() if finite else _ignore_invalid(xp):  # ∞ − ∞, replaced below
            log_prob = bernoulli_parts.log_prob_terms(logits, x, xp.log1p(e))
        if not finite:
            certain = xp.where(x == (logits > 0), 0, -xp.inf).astype(log_prob.dtype)  # x = σ(±inf)?
            log_prob = xp.where(xp.isinf(logits), certain, log_prob)
        ctx.save(logits, x, e)
        return log_prob

    @staticmethod
    def backward(ctx, g):
        """d/dl = x − σ(l) (since d softplus(l)/dl = σ(l));  d/dx = l.

        σ(l) is computed from the forward's e = exp(−|l|) as ``stable_sigmoid`` in ops/elementwise.py does
        (1/(1 + e) for l ≥ 0, e/(1 + e) for l < 0), with full relative precision (σ(−100) = 3.7e−44, not
        0). At l = ±inf, e = 0 gives σ(l) = 1 or 0 exactly, so d/dl = x − 1 or x: finite, the limit of the
        formula (d/dx = l is ±inf there)."""
        logits, x, e = ctx.saved
        grads = [None, None]
        if ctx.needs_input_grad[0]:
            grad = bernoulli_parts.logit_gradient(logits, x, e, g)  # (x − σ(l)) g, in g's (broadcast) shape
            grads[0] = sum_to_shape(grad, ctx.inputs[0].shape)
        if ctx.needs_input_grad[1]:
            grads[1] = sum_to_shape(g * logits, ctx.inputs[1].shape)
        return tuple(grads)


def bernoulli_log_prob(logits, x):
    """Elementwise log-probability of x ∈ [0, 1] under Bernoulli(sigmoid(logits)); shapes broadcast.

    Data targets (x without ``requires_grad``) outside [0, 1], or NaN, are refused with a ValueError (one
    integer max over x per call, 2.7 µs at 128×784 float32)."""
    x, logits = as_operand(x), as_operand(logits)
    shapes = numpy.shape(logits), numpy.shape(x)  # () for a Python number
    if shapes[0] != shapes[1]:  # the common case, equal shapes, skips the check
        check_broadcastable("bernoulli_log_prob", *shapes, names=("logits", "x"))
    _check_targets(x)
    return BernoulliLogProb.apply(logits, x)
