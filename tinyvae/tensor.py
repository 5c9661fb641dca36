"""``Tensor``: an array plus what the engine needs to differentiate through it.

A tensor is either a *leaf* (made by the user; if ``requires_grad`` its gradient accumulates in ``.grad``)
or the output of an op (it remembers the op's :class:`~tinyvae.autodiff.Context` in ``_ctx``).
Arithmetic, indexing and reductions on tensors call the ops in :mod:`tinyvae.ops`.

dtype rule
----------
* Floating point only: float32 (the default, for training) or float64 (for checks).
* Python numbers and lists become float32; NumPy float32/float64 arrays keep their dtype (float16 is
  widened to float32); integer, boolean, complex and object arrays are refused unless ``dtype=`` says
  what to convert them to.
* An op on a float32 and a float64 tensor computes in float64 (NumPy's promotion); a Python number takes
  the tensor's dtype (``x * 2.0`` stays float32). A gradient always has the dtype of its input, so the
  float32 side of a mixed op receives a float32 gradient.
"""

from __future__ import annotations

import numpy

from tinyvae import autodiff
from tinyvae.backend import array_module, default_array_module, to_device

DEFAULT_DTYPE = numpy.float32
_FLOAT_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def _to_float_array(data, dtype, argument="data"):
    """Convert ``data`` to a float32/float64 array following the dtype rule above."""
    if isinstance(data, Tensor):
        data = data.data
    if type(data) is numpy.ndarray and dtype is None and data.dtype in _FLOAT_DTYPES:
        if default_array_module() is numpy:
            return data  # the common case, kept fast: a float array used as is
    xp = default_array_module()
    if isinstance(data, bool | int | float | list | tuple) and not isinstance(data, numpy.generic):
        array = xp.asarray(data, dtype=dtype or DEFAULT_DTYPE)
    else:
        array = to_device(data if hasattr(data, "dtype") else numpy.asarray(data))
        if dtype is not None:
            array = array.astype(dtype, copy=False)
    if array.dtype == numpy.float16:
        array = array.astype(numpy.float32)
    if array.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"Tensor: {argument} has dtype {array.dtype}, but tensors hold float32 or float64; "
            f"pass dtype=numpy.float32 to convert it (or convert it yourself with .astype)"
        )
    return array


class Tensor:
    """An n-dimensional float array that can record the ops applied to it and backpropagate.

    ``Tensor(data, requires_grad=False, dtype=None)``: ``data`` is an array, a Python number or a nested
    list. An array is used as is, without a copy (so changing it changes the tensor).
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__weakref__")
    __array_priority__ = 1000  # so ``ndarray * tensor`` calls Tensor.__rmul__ rather than NumPy's loop

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _to_float_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None

    @classmethod
    def _from_op(cls, data, ctx):
        """Wrap an op's output without re-checking it (ops produce float arrays by construction)."""
        tensor = cls.__new__(cls)
        if isinstance(data, numpy.generic):  # NumPy reductions return scalars, not 0-d arrays
            data = numpy.asarray(data)
        tensor.data = data
        tensor.grad = None
        tensor.requires_grad = ctx is not None
        tensor._ctx = ctx
        return tensor

    # ----- what the array is -----
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def xp(self):
        """The array module (NumPy or CuPy) holding this tensor's data."""
        return array_module(self.data)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad_note = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad_note})"

    def numpy(self):
        """The data as a NumPy array (copied from the GPU if needed)."""
        return self.data.get() if hasattr(self.data, "get") else self.data

    def item(self):
        return self.data.item()

    # ----- the graph -----
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` is dL/d(self): optional for a scalar (taken as 1), required otherwise. Gradients *add*
        to what ``.grad`` already holds; zero them (``optimizer.zero_grad()``) between steps.
        """
        autodiff.backward(self, grad, retain_graph=retain_graph)

    def detach(self):
        """The same data, cut from the graph: no gradient flows back through the result."""
        return Tensor._from_op(self.data, None)

    def zero_grad(self):
        self.grad = None

    # ----- arithmetic (see tinyvae.ops.elementwise) -----
    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(other, self)

    def __sub__(self, other):
        return ops.sub(self, other)

    def __rsub__(self, other):
        return ops.sub(other, self)

    def __mul__(self, other):
        return ops.mul(self, other)

    def __rmul__(self, other):
        return ops.mul(other, self)

    def __truediv__(self, other):
        return ops.div(self, other)

    def __rtruediv__(self, other):
        return ops.div(other, self)

    def __pow__(self, exponent):
        return ops.power(self, exponent)

    def __rpow__(self, base):
        return ops.power(base, self)

    def __neg__(self):
        return ops.neg(self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    # ----- shapes (see tinyvae.ops.shape) -----
    def __getitem__(self, index):
        return ops.getitem(self, index)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        return ops.transpose(self, axes or None)

    @property
    def T(self):
        return ops.transpose(self, None)

    def broadcast_to(self, shape):
        return ops.broadcast_to(self, shape)

    # ----- reductions (see tinyvae.ops.reduce) -----
    def sum(self, axis=None, keepdims=False):
        return ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return ops.max(self, axis=axis, keepdims=keepdims)

    # ----- common elementwise functions, as methods for convenience -----
    def exp(self):
        return ops.exp(self)

    def log(self):
        return ops.log(self)

    def sqrt(self):
        return ops.sqrt(self)

    def relu(self):
        return ops.relu(self)

    def tanh(self):
        return ops.tanh(self)

    def sigmoid(self):
        return ops.sigmoid(self)


def as_operand(value):
    """Prepare the other operand of a binary op: tensors pass, Python numbers stay *weak* scalars
    (they take the tensor's dtype, as in NumPy 2), arrays and lists become constant tensors."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return Tensor(value)


from tinyvae import ops  # noqa: E402  (the ops need Tensor defined first)
