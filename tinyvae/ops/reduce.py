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
    axes = (axis,) if isinstance(axis, int) else tuple(axis) if isinstance(axis, tuple | list) else None
    if axes is None or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
        raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {axis!r}")
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
        if count == 0:  # NumPy would return NaN with a RuntimeWarning: a silent NaN in a loss
            refuse_empty_axes("mean", x.shape, axes, "the mean of no numbers is 0/0")
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
    axes = normalize_axes(axis, x.ndim, "max")
    try:
        return Max.apply(x, axes=axes, keepdims=keepdims)
    except ValueError:
        refuse_empty_axes("max", x.shape, axes, "the maximum of no numbers is undefined")
        raise


def refuse_empty_axes(op, shape, axes, why):
    """After a reduction failed: raise a ValueError naming the op, the axis of size 0 and the shape (NumPy
    says "zero-size array to reduction operation maximum which has no identity"). Called only on failure,
    so a reduction that works pays nothing for the check."""
    empty = [a for a in axes if shape[a] == 0]
    if empty:
        raise ValueError(
            f"{op}: cannot reduce over axis {empty[0]}, which has size 0 (input shape {tuple(shape)}): "
            f"{why}. An empty batch, K = 0 samples or a slice past the end usually causes this"
        ) from None


class LogSumExp(Function):
    """y = log Σ_{axes} exp(x), computed as m + log Σ exp(x - m) with m = max x.

    Shifting by the maximum makes the largest term exp(0) = 1, so nothing overflows, and inputs of
    magnitude 1e4 are fine. Groups with infinities (the shift is taken as 0 there, since ±inf − ±inf is
    undefined):

    * all −inf: the sum is 0 and y = −inf;
    * some +inf: the sum is +inf and y = +inf;
    * any NaN: y = NaN.

    An empty group (an axis of size 0) is refused by :func:`logsumexp` rather than given y = −inf: it
    comes from an empty batch or K = 0 samples far more often than from intent (the row kernel
    ``tinyvae.kernels.unrouted.logsumexp`` does return −inf for a row with no columns).
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

        Where y is not finite, exp(x_i − y) is 0/0 and we take the limit instead: an all −inf group has
        gradient 0 (every exp(x_i) is 0); a group with +inf entries gives them the whole weight, 1/c each
        for c such entries (the softmax as those entries grow: ties share, as in :class:`Max`), and 0 to
        the rest; a NaN group gets NaN. Only a non-finite y pays for this (one pass over y decides)."""
        x, y = ctx.saved
        xp = array_module(x)
        if xp.isfinite(y).all():
            softmax = xp.exp(x - y)
        else:
            softmax = _softmax_of_infinite_groups(xp, x, y, ctx.axes)
        g = g if ctx.keepdims else xp.expand_dims(g, ctx.axes)
        return g * softmax


def _softmax_of_infinite_groups(xp, x, y, axes):
    """exp(x − y) where y (keepdims) is finite; 0 for an all −inf group; 1/c at the c entries equal to
    +inf (0 elsewhere) for a +inf group; NaN stays NaN."""
    with _ignore_invalid(xp):
        softmax = xp.exp(x - xp.where(y == -xp.inf, 0, y))  # exp(−inf − 0) = 0; exp(finite − inf) = 0
    at_inf = (x == xp.inf) & (y == xp.inf)  # the entries that carry a +inf group's weight
    count = at_inf.sum(axis=axes, keepdims=True)
    share = (at_inf / xp.maximum(count, 1)).astype(x.dtype)
    return xp.where(at_inf, share, softmax)


def logsumexp(x, axis=-1, keepdims=False):
    """log Σ exp(x) along ``axis`` (default: the last), stable for large and ±inf inputs; an axis of size
    0 is refused (ValueError) rather than summed to −inf."""
    axes = normalize_axes(axis, x.ndim, "logsumexp")
    try:
        return LogSumExp.apply(x, axes=axes, keepdims=keepdims)
    except ValueError:
        refuse_empty_axes("logsumexp", x.shape, axes, "a log-sum-exp over no terms would be log 0 = −inf")
        raise


class LogSoftmax(Function):
    """y_i = x_i - log Σ_j exp(x_j) along one axis: log-probabilities that sum (in prob space) to 1.

    Computed as (x − m) − log Σ exp(x − m) with m = max x, so nothing overflows. Groups with infinities,
    where x − m would be ±inf − ±inf:

    * all −inf: no mass to normalise. Defined as y = −inf everywhere (every probability 0), with gradient
      0: the group stays all −inf under any finite change of its inputs.
    * some +inf: those entries take all the mass, y = −log c at each of the c entries equal to +inf and
      −inf at the others (the limit as they grow; ties share, as in LogSumExp).
    * any NaN: y = NaN.

    Only a group whose maximum is not finite pays for this (one pass over the maxima decides).
    """

    @staticmethod
    def forward(ctx, x, axis):
        xp = array_module(x)
        shift = x.max(axis=axis, keepdims=True)
        if xp.isfinite(shift).all():  # the common case
            shifted = x - shift
            y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
            ctx.save(y, None)
        else:
            dead = shift == -xp.inf  # all −inf groups
            shifted = x - xp.where(xp.isfinite(shift), shift, 0)
            at_inf = x == xp.inf
            shifted = xp.where(shift == xp.inf, xp.where(at_inf, 0, -xp.inf), shifted).astype(x.dtype)
            with _ignore_log_of_zero(xp):
                log_total = xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))  # log c for a +inf group
            y = shifted - xp.where(dead, 0, log_total)  # −inf − 0 = −inf in a dead group
            ctx.save(y, dead)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        """dy_i/dx_j = δ_ij - softmax_j, so dL/dx_j = g_j - softmax_j Σ_i g_i, with softmax = exp(y).
        In a +inf group exp(y) is the limiting softmax (1/c at the +inf entries, 0 elsewhere), so the same
        formula holds; an all −inf group gets 0 (its output is constant, see the class docstring)."""
        y, dead = ctx.saved
        xp = array_module(y)
        grad = g - xp.exp(y) * g.sum(axis=ctx.axis, keepdims=True)
        return grad if dead is None else xp.where(dead, 0, grad).astype(grad.dtype, copy=False)


def log_softmax(x, axis=-1):
    """Log of the softmax along ``axis``, computed in log space (no exp of large numbers); an axis of
    size 0 is refused (ValueError)."""
    (axis,) = normalize_axes(axis, x.ndim, "log_softmax")
    try:
        return LogSoftmax.apply(x, axis=axis)
    except ValueError:
        refuse_empty_axes("log_softmax", x.shape, (axis,), "there is nothing to normalise")
        raise


def _ignore_invalid(xp):
    """``inf − inf`` is computed on purpose where the result is replaced next: silence NumPy's warning."""
    errstate = getattr(xp, "errstate", None)
    return errstate(invalid="ignore") if errstate is not None else contextlib.nullcontext()


def _ignore_log_of_zero(xp):
    """``log(0) = -inf`` is the intended answer for an all -inf group, and exp(x − 0) may overflow to the
    intended +inf beside a +inf entry (the shift is 0 there): silence NumPy's warnings."""
    errstate = getattr(xp, "errstate", None)  # CuPy does not warn, and has no errstate
    return errstate(divide="ignore", over="ignore") if errstate is not None else contextlib.nullcontext()
