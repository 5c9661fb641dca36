"""``Tensor``: an array plus what the engine needs to differentiate through it.

A tensor is either a *leaf* (made by the user; if ``requires_grad`` its gradient accumulates in ``.grad``)
or the output of an op (it remembers the op's :class:`~tinyvae.autodiff.Context` in ``_ctx``).
Arithmetic, indexing and reductions on tensors call the ops in :mod:`tinyvae.ops`.

dtype rule
----------
* Floating point only: float32 (the default, for training) or float64 (for checks).
* Python numbers and lists become float32; NumPy float32/float64 arrays keep their dtype (float16 is
  widened to float32); integer, boolean and complex arrays are refused unless ``dtype=`` says what to
  convert them to.
* A nested list, or an object array converted with ``dtype=``, must be rectangular and hold real numbers
  (ValueError naming where it is ragged, TypeError naming the first string, None or other object, which
  NumPy would otherwise turn into NaN or its own error); text arrays and objects NumPy does not know are
  refused whatever ``dtype=`` says.
* An op on a float32 and a float64 tensor computes in float64 (NumPy's promotion); a Python number takes
  the tensor's dtype (``x * 2.0`` stays float32). A gradient always has the dtype of its input, so the
  float32 side of a mixed op receives a float32 gradient.
"""

from __future__ import annotations

import numbers

import numpy

from tinyvae import autodiff, ops
from tinyvae.backend import array_module, default_array_module, to_device, to_host

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
        if isinstance(data, list | tuple):
            _check_nested_numbers(data, argument)
        array = xp.asarray(data, dtype=dtype or DEFAULT_DTYPE)
    else:
        if not hasattr(data, "dtype"):
            data = numpy.asarray(data)  # an object NumPy does not know becomes a 0-d object array
            if data.dtype.kind in _NOT_NUMBERS:
                raise TypeError(
                    f"Tensor: {argument} is {_describe(data.item() if data.ndim == 0 else data)}; expected "
                    "a number, a nested list of numbers or a float array"
                )
        if data.dtype.kind == "O" and dtype is not None:  # Python objects, converted if all are numbers
            _check_object_array(data, argument)
        elif data.dtype.kind in _NOT_NUMBERS:  # text, or objects without a dtype= to convert them to
            hint = (
                "pass dtype=numpy.float32 if they are numbers" if data.dtype.kind == "O" else "parse it first"
            )
            raise TypeError(
                f"Tensor: {argument} has dtype {data.dtype} ({_NOT_NUMBERS[data.dtype.kind]}), but tensors "
                f"hold float32 or float64 numbers; {hint}"
            )
        array = to_device(data)
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


# Array kinds that hold no numbers: NumPy would turn a string into a float only if it spells one, and
# would turn None into NaN without a word (numpy.asarray([None], dtype=float) is [nan]).
_NOT_NUMBERS = {"O": "Python objects", "U": "text", "S": "bytes", "V": "raw records"}
_REAL_KINDS = ("b", "i", "u", "f")  # bool, signed and unsigned integers, floats


def _check_nested_numbers(data, argument):
    """Refuse a nested list that is not a rectangular block of real numbers, saying where it breaks.

    Only lists and tuples pay for this (one extra ``numpy.asarray``); arrays never do. NumPy's own
    messages ("setting an array element with a sequence", "could not convert string to float") name
    neither the argument nor the place."""
    try:
        kind = numpy.asarray(data).dtype.kind
    except ValueError:  # NumPy refuses ragged nesting
        place = _ragged_place(data, argument) or "the nesting is uneven"
        raise ValueError(
            f"Tensor: {argument} is a ragged nested list: {place}; a tensor is a rectangular array, so "
            "every list at one level must have the same length"
        ) from None
    if kind in _REAL_KINDS:
        return
    bad = _first_non_number(data, argument)
    if bad is not None:  # (ints beyond int64 make an object array too, but they are numbers: no error)
        raise TypeError(f"Tensor: {argument} holds {bad}; a tensor holds real numbers")


def _check_object_array(data, argument):
    """Refuse an object array holding anything but real numbers (None would become NaN), naming the place."""
    for index in numpy.ndindex(data.shape):
        bad = _first_non_number(data[index], f"{argument}[{', '.join(map(str, index))}]")
        if bad is not None:
            raise TypeError(f"Tensor: {argument} holds {bad}; a tensor holds real numbers")


def _nested_shape(data, path):
    """The shape of a rectangular nested list, or ``_Ragged`` naming the first place where it is not."""
    if not isinstance(data, list | tuple):
        return tuple(getattr(data, "shape", ()))
    shapes = [_nested_shape(item, f"{path}[{i}]") for i, item in enumerate(data)]
    for i, shape in enumerate(shapes[1:], start=1):
        if shape != shapes[0]:
            raise _Ragged(f"{path}[{i}] has shape {shape} but {path}[0] has shape {shapes[0]}")
    return (len(data), *(shapes[0] if shapes else ()))


class _Ragged(Exception):
    pass


def _ragged_place(data, path):
    try:
        _nested_shape(data, path)
    except _Ragged as error:
        return str(error)
    return None


def _first_non_number(data, path):
    """``"<value> (a <type>) at <path>"`` for the first leaf that is not a real number, else None."""
    if isinstance(data, list | tuple):
        for i, item in enumerate(data):
            found = _first_non_number(item, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(data, Tensor):
        return f"a Tensor at {path} (combine tensors with F.stack or F.concatenate)"
    if isinstance(data, numbers.Real) or getattr(getattr(data, "dtype", None), "kind", None) in _REAL_KINDS:
        return None
    return f"{_describe(data)} at {path}"


def _describe(value):
    """A short description of a value for an error message: ``'a' (a str)``, ``None``."""
    if value is None:
        return "None"
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    name = type(value).__name__
    return f"{shown} ({'an' if name[0] in 'aeiou' else 'a'} {name})"


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


# Function.apply wraps every op's output in this class, which autodiff cannot import (see autodiff.py).
autodiff.use_tensor_class(Tensor)


def host_array(value, dtype=numpy.float64):
    """A Tensor's or an array's values as a NumPy array of ``dtype`` in host memory (copied from the GPU when
    they live there): where results leave the computation to be scored, drawn or checked in float64."""
    return numpy.asarray(to_host(value.data if isinstance(value, Tensor) else value), dtype=dtype)
