"""Layers: ``Module`` (a container of parameters), ``Linear``, ``Conv2d``, ``ConvTranspose2d``, ``MLP``,
``Sequential``.

A module's parameters are the tensors with ``requires_grad=True`` assigned as its attributes, and those of
its sub-modules; they are found by walking the attributes in the order they were set, so
``named_parameters()`` returns stable, readable names such as ``encoder.layers.0.weight``.
"""

from __future__ import annotations

import math

import numpy

from tinyvae import functional as F
from tinyvae.tensor import DEFAULT_DTYPE, Tensor


def as_generator(rng):
    """A ``numpy.random.Generator`` from a Generator, an int seed, or None (fresh OS entropy)."""
    if isinstance(rng, numpy.random.Generator):
        return rng
    if rng is None or isinstance(rng, int | numpy.integer):
        return numpy.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def Parameter(data):
    """A leaf tensor that a module trains (``requires_grad=True``)."""
    return Tensor(data, requires_grad=True)


class Module:
    """Base class of every layer and model."""

    def __init__(self):
        object.__setattr__(self, "training", True)

    # ----- parameters -----
    def named_parameters(self, prefix=""):
        """(name, tensor) for every trainable tensor of this module and its sub-modules, depth first."""
        for name, value in vars(self).items():
            if isinstance(value, Tensor) and value.requires_grad:
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value.named_parameters(prefix + name + ".")
            elif isinstance(value, list | tuple):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield from item.named_parameters(f"{prefix}{name}.{i}.")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def modules(self):
        """This module and every sub-module, depth first."""
        yield self
        for value in vars(self).values():
            children = value if isinstance(value, list | tuple) else [value]
            for child in children:
                if isinstance(child, Module):
                    yield from child.modules()

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        """Switch to training mode (``eval()`` switches off); models read ``self.training``."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    # ----- saving and loading -----
    def state_dict(self):
        """{name: a copy of the parameter's array}, ready for ``numpy.savez``."""
        return {name: p.numpy().copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy arrays into the parameters; every name must match and every shape agree (nothing is
        changed unless all of them do)."""
        params = dict(self.named_parameters())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise KeyError(
                f"load_state_dict ({type(self).__name__}): missing keys {missing}, unexpected keys "
                f"{unexpected}"
            )
        for name, p in params.items():
            shape = numpy.shape(state[name])
            if shape != p.shape:
                raise ValueError(
                    f"load_state_dict ({type(self).__name__}): '{name}' has shape {shape} in the state "
                    f"but the parameter has shape {p.shape}"
                )
        for name, p in params.items():
            p.data[...] = p.xp.asarray(state[name], dtype=p.dtype)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")


class Linear(Module):
    """y = x W + b with W of shape (in_features, out_features).

    W is drawn from U(−√(3/in), √(3/in)), which has variance 1/in (LeCun et al. 1998, "Efficient BackProp",
    Sec. 4.6): each output then has about the variance of one input, whatever the width. b starts at zero.
    Measured on the default VAE (benchmarks/RESULTS.md, "Quality"): 112.0 nats test −ELBO after 30 epochs,
    against 114.0 with Glorot's U(±√(6/(in + out))) and 112.1 for PyTorch's own initialisation.
    """

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=DEFAULT_DTYPE):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int | numpy.integer) or value < 1:
                raise ValueError(f"Linear: {name} must be a positive integer, got {value!r}")
        rng = as_generator(rng)
        limit = math.sqrt(3.0 / in_features)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(rng.uniform(-limit, limit, (in_features, out_features)).astype(dtype))
        self.bias = Parameter(numpy.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


def _check_conv_sizes(layer, **sizes):
    """Refuse a channel count or kernel size below 1, a stride below 1 or a negative padding, naming it."""
    for name, value in sizes.items():
        low = 0 if name == "padding" else 1
        if isinstance(value, bool) or not isinstance(value, int | numpy.integer) or value < low:
            rule = "a non-negative" if low == 0 else "a positive"
            raise ValueError(f"{layer}: {name} must be {rule} integer, got {value!r}")


def _kernel_pair(layer, kernel_size):
    """(kh, kw) from an int k (a k × k kernel) or a pair."""
    pair = tuple(kernel_size) if isinstance(kernel_size, tuple | list) else (kernel_size, kernel_size)
    if len(pair) != 2:
        raise ValueError(f"{layer}: kernel_size must be an int or a pair (kh, kw), got {kernel_size!r}")
    for value in pair:
        _check_conv_sizes(layer, kernel_size=value)
    return int(pair[0]), int(pair[1])


class _ConvLayer(Module):
    """What Conv2d and ConvTranspose2d share: argument checks, the weight drawn U(±√(3/fan_in)) as in
    :class:`Linear`, a zero bias, the repr. A subclass gives ``op`` (the functional op), ``weight_shape``
    (its layout) and ``fan_in`` (the inputs one output sums, which is where the two differ)."""

    op = None

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        bias=True,
        rng=None,
        dtype=DEFAULT_DTYPE,
    ):
        super().__init__()
        name = type(self).__name__
        _check_conv_sizes(name, in_channels=in_channels, out_channels=out_channels, stride=stride)
        _check_conv_sizes(name, padding=padding)
        kh, kw = _kernel_pair(name, kernel_size)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = (kh, kw), int(stride), int(padding)
        limit = math.sqrt(3.0 / self.fan_in())
        shape = self.weight_shape()
        self.weight = Parameter(as_generator(rng).uniform(-limit, limit, shape).astype(dtype))
        self.bias = Parameter(numpy.zeros(self.out_channels, dtype=dtype)) if bias else None

    def forward(self, x):
        return self.op(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None})"
        )


class Conv2d(_ConvLayer):
    """y = conv2d(x, W, b, stride, padding) with W of shape (out_channels, in_channels, kh, kw) (PyTorch's
    layout): x (N, in_channels, H, W) → (N, out_channels, H', W'), H' = (H + 2·padding − kh) // stride + 1.

    Initialised like :class:`Linear`: each output is a dot product of W[o] with one window of
    fan_in = in_channels·kh·kw inputs, so W ~ U(±√(3/fan_in)) (variance 1/fan_in) keeps an output's variance
    about that of one input. b starts at zero.
    """

    op = staticmethod(F.conv2d)

    def weight_shape(self):
        return (self.out_channels, self.in_channels, *self.kernel_size)

    def fan_in(self):
        kh, kw = self.kernel_size
        return self.in_channels * kh * kw


class ConvTranspose2d(_ConvLayer):
    """y = conv_transpose2d(x, W, b, stride, padding) with W of shape (in_channels, out_channels, kh, kw)
    (PyTorch's layout): x (N, in_channels, H, W) → (N, out_channels, (H − 1)·stride − 2·padding + kh, ...).

    Initialised like :class:`Linear`, with fan_in the number of terms an output pixel sums: y[n, o, h, w]
    adds W[c, o, ki, kj] · x[n, c, ·, ·] over the in_channels channels c and the taps (ki, kj) that land on
    (h, w), which are ⌈kh/stride⌉·⌈kw/stride⌉ at most (exactly that inside the image when stride divides the
    kernel, e.g. 2·2 for kernel 4 and stride 2). So fan_in = in_channels·⌈kh/s⌉·⌈kw/s⌉ and W ~ U(±√(3/fan_in))
    gives an output about the variance of one input, the property Linear's rule is chosen for. PyTorch uses
    weight.size(1)·kh·kw = out_channels·kh·kw instead (the fan-in of the conv2d whose input-gradient this
    layer is): it counts the channels the layer writes, not the inputs an output reads, so for the decoder's
    ConvTranspose2d(64, 32, 4, 2, 1) it would use 512 where 256 terms are summed.
    """

    op = staticmethod(F.conv_transpose2d)

    def weight_shape(self):
        return (self.in_channels, self.out_channels, *self.kernel_size)

    def fan_in(self):
        kh, kw = self.kernel_size
        return self.in_channels * math.ceil(kh / self.stride) * math.ceil(kw / self.stride)


ACTIVATIONS = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "tanh": F.tanh,
    "sigmoid": F.sigmoid,
    "softplus": F.softplus,
}


def _activation(name):
    if callable(name):
        return name
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)} or pass a function"
        )
    return ACTIVATIONS[name]


class Sequential(Module):
    """Apply modules (or functions such as ``F.relu``) one after the other."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]


class MLP(Module):
    """A multilayer perceptron: ``sizes = [784, 400, 20]`` makes Linear(784, 400) → act → Linear(400, 20).

    The activation follows every layer but the last; ``final_activation`` (default none) follows the last.
    """

    def __init__(self, sizes, activation="relu", final_activation=None, rng=None, dtype=DEFAULT_DTYPE):
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP: sizes needs at least an input and an output size, got {sizes}")
        rng = as_generator(rng)
        self.sizes = sizes
        self.activation = _activation(activation)
        self.final_activation = None if final_activation is None else _activation(final_activation)
        self.layers = [Linear(a, b, rng=rng, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        x = self.layers[-1](x)
        return x if self.final_activation is None else self.final_activation(x)

    def __repr__(self):
        return f"MLP({self.sizes})"
