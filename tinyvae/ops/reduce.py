"""Reductions: sum, mean, max, logsumexp, and log_softmax (which normalises along an axis).

A reduction over ``axes`` maps each output element to a group of input elements; its backward puts the
output's gradient back on the group with :func:`expand_to_input`.
"""

from __future__ import annotations

import contextlib

from tinyvae.autodiff import Function
from tinyvae.backend import array_module


def normalize_axes(axis, ndim, op="reduce"):
    """``axis`` (None, an int or a tuple, negatives allowed) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    limit = ndim if ndim else 1  # a scalar accepts axis 0 or -1, as in NumPy
    for a in axes:
        if not -limit <= a < limit:
            raise ValueError(f"{op}: axis {a} is out of range for an input with {ndim} dimensions")
    if ndim == 0:
        return ()
    normalized = tuple(sorted(a % ndim for a in axes))
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{op}: axis {axis} repeats an axis")
    return normalized


def expand_to_input(g, axes, keepdims, input_shape):
    """Broadcast the gradient of a reduction over ``axes`` back to the input's shape (a read-only view)."""
    xp = array_module(g)
    if not keepdims and axes:
        g = xp.expand_dims(g, axes)
    return xp.broadcast_to(g, input_shape)


class Sum(Function):
    """y = Σ_{axes} x."""

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        ctx.axes, ctx.keepdims, ctx.shape = axes, keepdims, x.shape
        return x.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        """dy/dx_i = 1 for every x_i in the group summed into y: each receives g unchanged."""
        return expand_to_input(g, ctx.axes, ctx.keepdims, ctx.shape)


def sum(x, axis=None, keepdims=False):  # noqa: A001  (mirrors numpy.sum)
    return Sum.apply(x, axes=normalize_axes(axis, x.ndim, "sum"), keepdims=keepdims)


class Mean(Function):
    """y = (1/n) Σ_{axes} x, with n the number of elements in each group."""

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        count = 1
        for a in axes:
            count *= x.shape[a]
        ctx.axes, ctx.keepdims, ctx.shape, ctx.count = axes, keepdims, x.shape, count
        return x.mean(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        """dy/dx_i = 1/n."""
        return expand_to_input(g / ctx.count, ctx.axes, ctx.keepdims, ctx.shape)


def mean(x, axis=None, keepdims=False):
    return Mean.apply(x, axes=normalize_axes(axis, x.ndim, "mean"), keepdims=keepdims)


class Max(Function):
    """y = max_{axes} x."""

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        y = x.max(axis=axes, keepdims=True)
        ctx.save(x, y)
        ctx.axes, ctx.keepdims = axes, keepdims
        return y if keepdims else y.squeeze(axis=axes)

    @staticmethod
    def backward(ctx, g):
        """dy/dx_i = 1 for the maximal element, 0 for the others. When several elements tie for the
        maximum, the gradient is shared equally among them (the average of the one-sided choices)."""
        x, y = ctx.saved
        is_max = x == y
        ties = is_max.sum(axis=ctx.axes, keepdims=True)
        g = g if ctx.keepdims else array_module(g).expand_dims(g, ctx.axes)
        return is_max * (g / ties)


def max(x, axis=None, keepdims=False):  # noqa: A001  (mirrors numpy.max)
    return Max.apply(x, axes=normalize_axes(axis, x.ndim, "max"), keepdims=keepdims)


class LogSumExp(Function):
    """y = log Σ_{axes} exp(x), computed as m + log Σ exp(x - m) with m = max x.

    Shifting by the maximum makes the largest term exp(0) = 1, so nothing overflows, and inputs of
    magnitude 1e4 are fine. A group that is all -inf has sum 0 and y = -inf (the shift is taken as 0
    there, since -inf - (-inf) is undefined).
    """

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        xp = array_module(x)
        shift = x.max(axis=axes, keepdims=True)
        shift = xp.where(xp.isfinite(shift), shift, 0)
        with _ignore_log_of_zero(xp):
            y = xp.log(xp.exp(x - shift).sum(axis=axes, keepdims=True)) + shift
        ctx.save(x, y)
        ctx.axes, ctx.keepdims = axes, keepdims
        return y if keepdims else y.squeeze(axis=axes)

    @staticmethod
    def backward(ctx, g):
        """dy/dx_i = exp(x_i) / Σ_j exp(x_j) = exp(x_i - y): the softmax of x over the group.
        In an all -inf group every exp(x_i) is 0, so the gradient is 0 (we use y = 0 there)."""
        x, y = ctx.saved
        xp = array_module(x)
        softmax = xp.exp(x - xp.where(y == -xp.inf, 0, y))
        g = g if ctx.keepdims else xp.expand_dims(g, ctx.axes)
        return g * softmax


def logsumexp(x, axis=-1, keepdims=False):
    """log Σ exp(x) along ``axis`` (default: the last), stable for large and -inf inputs."""
    return LogSumExp.apply(x, axes=normalize_axes(axis, x.ndim, "logsumexp"), keepdims=keepdims)


class LogSoftmax(Function):
    """y_i = x_i - log Σ_j exp(x_j) along one axis: log-probabilities that sum (in prob space) to 1."""

    @staticmethod
    def forward(ctx, x, axis):
        xp = array_module(x)
        shift = x.max(axis=axis, keepdims=True)
        shifted = x - xp.where(xp.isfinite(shift), shift, 0)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        """dy_i/dx_j = δ_ij - softmax_j, so dL/dx_j = g_j - softmax_j Σ_i g_i, with softmax = exp(y)."""
        (y,) = ctx.saved
        xp = array_module(y)
        return g - xp.exp(y) * g.sum(axis=ctx.axis, keepdims=True)


def log_softmax(x, axis=-1):
    """Log of the softmax along ``axis``, computed in log space (no exp of large numbers)."""
    (axis,) = normalize_axes(axis, x.ndim, "log_softmax")
    return LogSoftmax.apply(x, axis=axis)


def _ignore_log_of_zero(xp):
    """``log(0) = -inf`` is the intended answer for an all -inf group: silence NumPy's warning."""
    errstate = getattr(xp, "errstate", None)  # CuPy does not warn, and has no errstate
    return errstate(divide="ignore") if errstate is not None else contextlib.nullcontext()
