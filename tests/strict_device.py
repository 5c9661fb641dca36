"""A stand-in for CuPy that is as strict as CuPy about host and device memory, for tests on a CPU.

On a GPU, tinyvae's tensors hold CuPy arrays, and CuPy refuses to move data between the GPU (the *device*)
and main memory (the *host*) behind the program's back:

* ``numpy.asarray(cupy_array)`` raises ``TypeError: Implicit conversion to a NumPy array is not allowed``
  (so do Matplotlib, ``numpy.savez`` of an object array, ``host_array[i] = cupy_array`` ... anything that
  asks the array for ``__array__``);
* an op that mixes a CuPy array with a NumPy array (``cupy_array + numpy_array``, ``host += device``,
  ``cupy.concatenate([device, host])``) raises ``TypeError`` instead of copying one of them;
* what *is* allowed is explicit: ``cupy_array.get()`` and ``cupy.asnumpy`` copy to the host,
  ``cupy.asarray(numpy_array)`` copies to the device, and ``float()``, ``int()``, ``bool()``, ``.item()``
  and ``.tolist()`` read values back (a synchronisation, but one the code asked for by name).

Code that breaks these rules runs fine on NumPy and crashes only on a GPU. :class:`DeviceArray` holds a
NumPy array but follows CuPy's rules, so ``tinyvae.backend.simulated_device(DEVICE, DeviceArray)`` runs
the library on a pretend device here and every implicit crossing fails the test that made it. The
arithmetic is NumPy's own, on the wrapped array, so results are bit for bit those of the NumPy backend.

Why a wrapper and not an ``ndarray`` subclass: ``numpy.asarray`` of a subclass succeeds silently (it
returns the base class view), which is exactly the conversion this module exists to catch.

Deliberately *not* like CuPy: every NumPy function works on a DeviceArray (CuPy lacks a few), and the
array prints as ``DeviceArray(...)``. Only the host/device rules are imitated.
"""

from __future__ import annotations

import numbers
import types

import numpy

IMPLICIT_CONVERSION = (
    "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array "
    "explicitly (strict_device imitates CuPy here)."
)

# Every refusal ever raised, in order, until a test clears it: library code that catches a TypeError and
# carries on (a fallback, a "not a number" branch) would hide a crossing that CuPy refuses, so the tests
# check this list as well as the exceptions.
REFUSALS = []


class ImplicitTransferError(TypeError):
    """What CuPy raises (a TypeError) for an implicit device→host conversion or a host/device mix; the
    subclass only lets the tests tell it from other TypeErrors. Each one is recorded in REFUSALS."""

    def __init__(self, message):
        super().__init__(message)
        REFUSALS.append(message)


def _mixing_error(where):
    return ImplicitTransferError(
        f"{where}: a device array cannot be combined with a NumPy array (numpy.ndarray) in one operation; "
        "copy it explicitly with xp.asarray (to the device) or .get() (to the host), as CuPy requires"
    )


def _to_wrapped_host(value, where, allow_host_arrays=False):
    """``value`` with every DeviceArray replaced by the NumPy array it wraps (inside lists, tuples and
    dicts too). A NumPy array met on the way is a host array mixed into a device operation: TypeError,
    unless ``allow_host_arrays`` (the explicit host→device copies: ``xp.asarray(host_array)``)."""
    if isinstance(value, DeviceArray):
        return value._host
    if isinstance(value, numpy.ndarray):
        if allow_host_arrays:
            return value
        raise _mixing_error(where)
    if isinstance(value, list | tuple):
        return type(value)(_to_wrapped_host(v, where, allow_host_arrays) for v in value)
    if isinstance(value, dict):
        return {k: _to_wrapped_host(v, where, allow_host_arrays) for k, v in value.items()}
    return value


def _wrap(value):
    """Results of NumPy on the wrapped arrays, as device values: arrays and NumPy scalars become
    DeviceArrays (CuPy's reductions return 0-d arrays, never host scalars); tuples and lists of them are
    wrapped item by item; anything else (a Python number, a shape, a dtype) is returned unchanged."""
    if isinstance(value, numpy.ndarray):
        return DeviceArray(value)
    if isinstance(value, numpy.generic):
        return DeviceArray(numpy.asarray(value))
    if isinstance(value, tuple | list):
        return type(value)(_wrap(v) for v in value)
    return value


# Attributes of the wrapped ndarray that would hand its host memory out without a copy, or that CuPy
# does not have: refused, so no code can reach the host array around the rules.
_REFUSED_ATTRIBUTES = {"ctypes", "data", "flat", "tobytes", "tofile", "dump", "dumps", "itemset", "getfield"}


def _is_operand(value):
    """Whether a binary operator should handle ``value`` (otherwise it returns NotImplemented, so a Tensor's
    reflected operator runs, as CuPy defers to objects with a higher ``__array_priority__``)."""
    return isinstance(value, DeviceArray | numpy.ndarray | numbers.Number | numpy.generic)


def _binary(ufunc, reflected=False):
    def operator(self, other):
        if not _is_operand(other):
            return NotImplemented
        return ufunc(other, self) if reflected else ufunc(self, other)

    operator.__name__ = f"__{'r' if reflected else ''}{ufunc.__name__}__"
    return operator


def _in_place(ufunc):
    def operator(self, other):
        if not _is_operand(other):
            return NotImplemented
        return ufunc(self, other, out=(self,))

    return operator


def _operators(ufunc):
    """``x op y``, ``y op x`` and ``x op= y`` for one ufunc: the three methods of an arithmetic operator."""
    return _binary(ufunc), _binary(ufunc, True), _in_place(ufunc)


class DeviceArray:
    """An array "in device memory": a NumPy array that refuses implicit conversion, as a CuPy array does.

    ``DeviceArray(host_array)`` wraps without copying (use ``DEVICE.asarray`` to copy explicitly). Methods
    and attributes of the wrapped array are forwarded, with array results wrapped again."""

    __slots__ = ("_host",)

    def __init__(self, host_array):
        if not isinstance(host_array, numpy.ndarray):
            raise TypeError(f"DeviceArray wraps a numpy.ndarray, not a {type(host_array).__name__}")
        self._host = host_array

    # ----- the two ways across, as in CuPy -----
    def __array__(self, dtype=None, copy=None):
        raise ImplicitTransferError(IMPLICIT_CONVERSION)

    def get(self):
        """A NumPy copy in host memory: the explicit device→host transfer."""
        return self._host.copy()

    # ----- NumPy dispatch: NumPy functions and ufuncs on device arrays stay on the device -----
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        if method == "at":  # ufunc.at(a, indices, b): CuPy copies host indices over, as indexing does
            a, indices, *b = inputs
            host_inputs = (
                _to_wrapped_host(a, where),
                _to_wrapped_host(indices, where, allow_host_arrays=True),
                *_to_wrapped_host(b, where),
            )
        else:
            host_inputs = _to_wrapped_host(inputs, where)
        outputs = kwargs.get("out")
        if outputs is not None:
            kwargs["out"] = _to_wrapped_host(outputs, where)
        result = getattr(ufunc, method)(*host_inputs, **kwargs)
        if outputs is not None:  # in place: hand back the very device arrays written to
            return outputs[0] if len(outputs) == 1 else outputs
        return _wrap(result)

    def __array_function__(self, func, relevant_types, args, kwargs):
        where = f"numpy.{func.__name__}"
        return _wrap(func(*_to_wrapped_host(args, where), **_to_wrapped_host(kwargs, where)))

    # ----- what the array is -----
    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    itemsize = property(lambda self: self._host.itemsize)
    nbytes = property(lambda self: self._host.nbytes)
    strides = property(lambda self: self._host.strides)
    flags = property(lambda self: self._host.flags)
    T = property(lambda self: DeviceArray(self._host.T))
    base = property(lambda self: None if self._host.base is None else _wrap(self._host.base))

    def __getattr__(self, name):
        """Methods of the wrapped array (sum, astype, reshape, argmax, ...), returning device arrays."""
        if name.startswith("_") or name in _REFUSED_ATTRIBUTES:
            raise AttributeError(f"DeviceArray has no attribute {name!r}")
        attribute = getattr(self._host, name)
        if not callable(attribute):
            return _wrap(attribute)

        def method(*args, **kwargs):
            where = f"DeviceArray.{name}"
            return _wrap(attribute(*_to_wrapped_host(args, where), **_to_wrapped_host(kwargs, where)))

        return method

    def __len__(self):
        return len(self._host)

    def __iter__(self):
        return (_wrap(row) for row in self._host)

    def __repr__(self):
        return f"DeviceArray({self._host!r})"

    def __format__(self, spec):
        return format(self._host if self._host.ndim else self._host[()], spec)

    # ----- explicit reads of one value (CuPy allows them: a synchronisation the code asks for) -----
    def __float__(self):
        return float(self._single("float"))

    def __int__(self):
        return int(self._single("int"))

    def __index__(self):
        if self._host.dtype.kind not in "biu":
            raise TypeError("only integer device arrays can be used as an index")
        return int(self._single("index"))

    def __bool__(self):
        return bool(self._single("bool"))

    def _single(self, what):
        if self._host.size != 1:
            raise TypeError(f"{what}() of a device array of shape {self.shape}: only size-1 arrays convert")
        return self._host.reshape(())[()]

    # ----- indexing: device or host indices (CuPy copies host index arrays over), device values -----
    def __getitem__(self, key):
        return _wrap(self._host[_to_wrapped_host(key, "DeviceArray.__getitem__", allow_host_arrays=True)])

    def __setitem__(self, key, value):
        host_key = _to_wrapped_host(key, "DeviceArray.__setitem__", allow_host_arrays=True)
        whole = isinstance(key, slice) and key == slice(None)
        if isinstance(value, numpy.ndarray) and value.ndim > 0 and not whole:
            raise _mixing_error("DeviceArray.__setitem__")  # CuPy copies a host array in only for a[:] = h
        self._host[host_key] = value._host if isinstance(value, DeviceArray) else value

    # ----- operators, all through NumPy's ufuncs (so __array_ufunc__ enforces the rules) -----
    __add__, __radd__, __iadd__ = _operators(numpy.add)
    __sub__, __rsub__, __isub__ = _operators(numpy.subtract)
    __mul__, __rmul__, __imul__ = _operators(numpy.multiply)
    __truediv__, __rtruediv__, __itruediv__ = _operators(numpy.true_divide)
    __floordiv__, __rfloordiv__ = _binary(numpy.floor_divide), _binary(numpy.floor_divide, True)
    __mod__, __rmod__ = _binary(numpy.remainder), _binary(numpy.remainder, True)
    __pow__, __rpow__, __ipow__ = _operators(numpy.power)
    __matmul__, __rmatmul__ = _binary(numpy.matmul), _binary(numpy.matmul, True)
    __and__, __rand__, __iand__ = _operators(numpy.bitwise_and)
    __or__, __ror__, __ior__ = _operators(numpy.bitwise_or)
    __xor__, __rxor__ = _binary(numpy.bitwise_xor), _binary(numpy.bitwise_xor, True)
    __lt__, __le__ = _binary(numpy.less), _binary(numpy.less_equal)
    __gt__, __ge__ = _binary(numpy.greater), _binary(numpy.greater_equal)
    __eq__, __ne__ = _binary(numpy.equal), _binary(numpy.not_equal)
    __hash__ = None

    def __neg__(self):
        return numpy.negative(self)

    def __pos__(self):
        return numpy.positive(self)

    def __abs__(self):
        return numpy.absolute(self)

    def __invert__(self):
        return numpy.invert(self)


# NumPy functions CuPy does not have, which library code might reach for on ``xp``: refused, so a test
# catches them (CuPy has no floating-point error state: wrap device code in ``numpy.errstate`` instead,
# which is harmless there).
_NOT_IN_CUPY = {"errstate", "seterr", "geterr", "seterrcall", "geterrcall"}

# Functions that copy host data to the device on purpose (CuPy's cupy.asarray and friends), and the
# ``*_like`` constructors, which read only a shape and dtype from their argument.
_HOST_ARRAYS_ACCEPTED = {"asarray", "array", "asanyarray", "ascontiguousarray"}


class _DeviceNamespace:
    """A NumPy (sub)module seen from the device: its functions take and return device arrays."""

    def __init__(self, numpy_namespace, name):
        self._numpy = numpy_namespace
        self.__name__ = name

    def __getattr__(self, name):
        if name.startswith("__") or name in _NOT_IN_CUPY:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} (CuPy has none)")
        attribute = getattr(self._numpy, name)
        if isinstance(attribute, types.ModuleType):
            return _DeviceNamespace(attribute, f"{self.__name__}.{name}")
        if isinstance(attribute, type):  # dtypes (numpy.float32), finfo, iinfo: as in CuPy, NumPy's own
            return attribute
        if isinstance(attribute, numpy.ufunc):
            return _DeviceUfunc(attribute)
        if callable(attribute):
            return _device_function(attribute, f"{self.__name__}.{name}", name in _HOST_ARRAYS_ACCEPTED)
        return attribute  # constants: pi, inf, newaxis

    def __repr__(self):
        return f"<strict_device namespace {self.__name__}>"


def _device_function(function, where, accepts_host_arrays=False):
    def on_device(*args, **kwargs):
        host_args = _to_wrapped_host(args, where, accepts_host_arrays or where.endswith("_like"))
        host_kwargs = _to_wrapped_host(kwargs, where, accepts_host_arrays)
        result = function(*host_args, **host_kwargs)
        copied_from_host = accepts_host_arrays and args and isinstance(args[0], numpy.ndarray)
        if copied_from_host and isinstance(result, numpy.ndarray) and numpy.shares_memory(args[0], result):
            result = result.copy()  # xp.asarray(host) is a copy to the device: it never aliases the host
        return _wrap(result)

    on_device.__name__ = getattr(function, "__name__", "function")
    return on_device


class _DeviceUfunc:
    """``xp.add`` and its methods (``xp.add.at``), computing on device arrays."""

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        return _device_function(self._ufunc, f"xp.{self.__name__}")(*args, **kwargs)

    def at(self, a, indices, b=None):
        """In place, ``a[indices] op= b`` once per occurrence; as in CuPy, host index arrays are copied
        over (as indexing copies them), while ``a`` and ``b`` must be device arrays."""
        where = f"xp.{self.__name__}.at"
        arguments = [_to_wrapped_host(a, where), _to_wrapped_host(indices, where, allow_host_arrays=True)]
        if b is not None:
            arguments.append(_to_wrapped_host(b, where))
        self._ufunc.at(*arguments)

    def __getattr__(self, name):
        attribute = getattr(self._ufunc, name)
        if callable(attribute):
            return _device_function(attribute, f"xp.{self.__name__}.{name}")
        return attribute


class DeviceGenerator:
    """``xp.random.default_rng(seed)``: a NumPy Generator whose draws land on the device."""

    def __init__(self, numpy_generator):
        self._generator = numpy_generator

    def __getattr__(self, name):
        attribute = getattr(self._generator, name)
        if callable(attribute):
            return _device_function(attribute, f"Generator.{name}")
        return attribute


class _DeviceRandom(_DeviceNamespace):
    def default_rng(self, seed=None):
        return DeviceGenerator(numpy.random.default_rng(seed))


class StrictDevice(_DeviceNamespace):
    """The array module of the pretend device: ``xp.zeros``, ``xp.exp``, ``xp.asarray`` ... as CuPy's.

    Every NumPy function is reachable (forwarded to NumPy on the wrapped arrays); results are DeviceArrays.
    ``xp.asarray(host_array)`` and ``xp.array`` copy host data to the device, and ``xp.asnumpy(a)`` copies
    back, as in CuPy; any other function given a NumPy array raises TypeError."""

    ndarray = DeviceArray

    def __init__(self):
        super().__init__(numpy, "strict_device")
        self.random = _DeviceRandom(numpy.random, "strict_device.random")

    @staticmethod
    def asnumpy(a):
        """The host copy of ``a`` (``a`` itself when it is already a NumPy array), as ``cupy.asnumpy``."""
        return a.get() if isinstance(a, DeviceArray) else numpy.asarray(a)

    @staticmethod
    def get_array_module(*arrays):
        return DEVICE if any(isinstance(a, DeviceArray) for a in arrays) else numpy


DEVICE = StrictDevice()
