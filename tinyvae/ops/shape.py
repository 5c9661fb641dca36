"""Ops that move elements without changing them: reshape, transpose, indexing, concatenate, stack,
broadcast_to. Each backward moves the gradient back to where the elements came from."""

from __future__ import annotations

import itertools

from tinyvae.autodiff import Function, as_tensor, is_tensor, sum_to_shape
from tinyvae.backend import array_module


class Reshape(Function):
    """y = x with a new shape (same elements, same order)."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.input_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        """Element i of y is element i of x, so the gradient is g in x's shape."""
        return g.reshape(ctx.input_shape)


def reshape(x, shape):
    try:
        return Reshape.apply(x, shape=tuple(shape))
    except ValueError as error:
        raise ValueError(f"reshape: cannot reshape shape {x.shape} into {tuple(shape)}") from error


class Transpose(Function):
    """y = x with its axes permuted: y.shape[i] == x.shape[axes[i]]."""

    @staticmethod
    def forward(ctx, x, axes):
        axes = tuple(reversed(range(x.ndim))) if axes is None else axes
        ctx.axes = axes
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        """Undo the permutation: axis axes[i] of x came from axis i of y, so apply the inverse."""
        inverse = sorted(range(len(ctx.axes)), key=ctx.axes.__getitem__)
        return g.transpose(inverse)


def transpose(x, axes=None):
    """Permute axes (reverse them when ``axes`` is None, as ``numpy.transpose`` does)."""
    if axes is not None:
        axes = tuple(a % x.ndim if x.ndim else a for a in axes)
        if sorted(axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of {x.ndim} axes")
    return Transpose.apply(x, axes=axes)


def _is_basic_index(index):
    """True for keys made of ints, slices, None and Ellipsis only: they select each element at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, int | slice) or p is None or p is Ellipsis for p in parts)


class GetItem(Function):
    """y = x[index]: basic indexing (ints, slices) or integer-array / boolean indexing."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.index, ctx.input_shape = index, x.shape
        return x[index]

    @staticmethod
    def backward(ctx, g):
        """dL/dx_j = Σ over the positions of y that read x_j of g. With an integer array an element can
        be read several times (x[[0, 0]]), so the gradient scatter-*adds* (``add.at``), never assigns."""
        xp = array_module(g)
        grad = xp.zeros(ctx.input_shape, dtype=g.dtype)
        if _is_basic_index(ctx.index):
            grad[ctx.index] = g  # each element is selected at most once: assignment is the sum
        else:
            xp.add.at(grad, ctx.index, g)
        return grad


def getitem(x, index):
    if is_tensor(index):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if is_tensor(i) else i for i in index)
    return GetItem.apply(x, index=index)


class BroadcastTo(Function):
    """y = x broadcast to ``shape`` (NumPy's rules)."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.input_shape = x.shape
        return array_module(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, g):
        """Every copy of x_i in y contributes, so dL/dx_i sums g over the copies."""
        return sum_to_shape(g, ctx.input_shape)


def broadcast_to(x, shape):
    try:
        return BroadcastTo.apply(x, shape=tuple(shape))
    except ValueError as error:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {tuple(shape)}") from error


class Concatenate(Function):
    """y = [x_1, x_2, ...] joined along an existing axis."""

    @staticmethod
    def forward(ctx, *xs, axis):
        ctx.axis = axis
        ctx.boundaries = list(itertools.accumulate(x.shape[axis] for x in xs))[:-1]
        return array_module(*xs).concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, g):
        """Each input's gradient is its own slice of g along the axis."""
        return tuple(array_module(g).split(g, ctx.boundaries, axis=ctx.axis))


def concatenate(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    ndim = tensors[0].ndim
    if ndim == 0:
        raise ValueError("concatenate: scalars cannot be concatenated; use stack")
    axis = axis % ndim if -ndim <= axis < ndim else axis
    for i, t in enumerate(tensors):
        other_dims = [n for d, n in enumerate(t.shape) if d != axis]
        expected = [n for d, n in enumerate(tensors[0].shape) if d != axis]
        if t.ndim != ndim or other_dims != expected or not 0 <= axis < ndim:
            raise ValueError(
                f"concatenate: tensor {i} has shape {t.shape}, which does not match tensor 0's shape "
                f"{tensors[0].shape} except along axis {axis}"
            )
    return Concatenate.apply(*tensors, axis=axis)


class Stack(Function):
    """y = [x_1, x_2, ...] stacked along a new axis."""

    @staticmethod
    def forward(ctx, *xs, axis):
        ctx.axis = axis
        return array_module(*xs).stack(xs, axis=axis)

    @staticmethod
    def backward(ctx, g):
        """Input i's gradient is the slice i of g along the new axis."""
        xp = array_module(g)
        return tuple(xp.take(g, i, axis=ctx.axis) for i in range(g.shape[ctx.axis]))


def stack(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"stack: tensor {i} has shape {t.shape} but tensor 0 has shape {tensors[0].shape}; "
                "stacked tensors must have equal shapes"
            )
    ndim = tensors[0].ndim + 1
    if not -ndim <= axis < ndim:
        raise ValueError(f"stack: axis {axis} is out of range for a result with {ndim} dimensions")
    return Stack.apply(*tensors, axis=axis % ndim)
