"""Elementwise ops: arithmetic with broadcasting, and the activation functions.

Notation in the docstrings: ``g`` is the incoming gradient dL/dy, ``y`` the op's output. Binary ops
broadcast like NumPy; their backward sums each gradient back to its input's shape with ``sum_to_shape``.
"""

from __future__ import annotations

from tinyvae.autodiff import (
    Function,
    as_operand,
    check_broadcastable,
    check_same_array_module,
    is_tensor,
    sum_to_shape,
)
from tinyvae.backend import array_module
from tinyvae.kernels import relu as relu_kernels


def _apply_binary(op, name, a, b):
    """``op.apply(a, b)`` once the operands are known to meet, so a mistake is reported here, naming the op
    and both shapes, rather than by NumPy from inside the forward. Equal shapes and one array type (the
    common case) cost two comparisons; only a mismatch pays for the full checks."""
    a, b = as_operand(a), as_operand(b)
    if is_tensor(a) and is_tensor(b):  # a Python number broadcasts against anything
        if type(a.data) is not type(b.data):
            check_same_array_module(name, a.data, b.data)
        if a.shape != b.shape:
            check_broadcastable(name, a.shape, b.shape)
    return op.apply(a, b)


# ---------------------------------------------------------------- arithmetic


class Add(Function):
    """y = a + b."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        """dy/da = dy/db = 1, so each input receives g, summed over the axes it was broadcast along."""
        grad_a = sum_to_shape(g, ctx.inputs[0].shape) if ctx.needs_input_grad[0] else None
        grad_b = sum_to_shape(g, ctx.inputs[1].shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


def add(a, b):
    return _apply_binary(Add, "add", a, b)


class Sub(Function):
    """y = a - b."""

    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        """dy/da = 1, dy/db = -1."""
        grad_a = sum_to_shape(g, ctx.inputs[0].shape) if ctx.needs_input_grad[0] else None
        grad_b = sum_to_shape(-g, ctx.inputs[1].shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


def sub(a, b):
    return _apply_binary(Sub, "sub", a, b)


class Mul(Function):
    """y = a * b."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        """dy/da = b, dy/db = a (the product rule, one factor at a time)."""
        a, b = ctx.saved
        grad_a = sum_to_shape(g * b, ctx.inputs[0].shape) if ctx.needs_input_grad[0] else None
        grad_b = sum_to_shape(g * a, ctx.inputs[1].shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


def mul(a, b):
    return _apply_binary(Mul, "mul", a, b)


class Div(Function):
    """y = a / b."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        """dy/da = 1/b, dy/db = -a/b² (quotient rule)."""
        a, b = ctx.saved
        grad_a = sum_to_shape(g / b, ctx.inputs[0].shape) if ctx.needs_input_grad[0] else None
        grad_b = sum_to_shape(-g * a / (b * b), ctx.inputs[1].shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


def div(a, b):
    return _apply_binary(Div, "div", a, b)


class Power(Function):
    """y = a ** b, for a > 0 when b is a tensor that needs a gradient."""

    @staticmethod
    def forward(ctx, a, b):
        y = a**b
        ctx.save(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        """dy/da = b a^(b-1);  dy/db = a^b log a  (since a^b = exp(b log a))."""
        a, b, y = ctx.saved
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = sum_to_shape(g * b * a ** (b - 1), ctx.inputs[0].shape)
        if ctx.needs_input_grad[1]:
            xp = array_module(a)
            grad_b = sum_to_shape(g * y * xp.log(a), ctx.inputs[1].shape)
        return grad_a, grad_b


def power(a, b):
    return _apply_binary(Power, "power", a, b)


class Neg(Function):
    """y = -x."""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        """dy/dx = -1."""
        return -g


def neg(x):
    return Neg.apply(x)


# ---------------------------------------------------------------- exp, log, sqrt


class Exp(Function):
    """y = exp(x)."""

    @staticmethod
    def forward(ctx, x):
        y = array_module(x).exp(x)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        """dy/dx = exp(x) = y, so the forward's output is all the backward needs."""
        (y,) = ctx.saved
        return g * y


def exp(x):
    """Elementwise e^x."""
    return Exp.apply(x)


class Log(Function):
    """y = log(x), for x > 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save(x)
        return array_module(x).log(x)

    @staticmethod
    def backward(ctx, g):
        """dy/dx = 1/x."""
        (x,) = ctx.saved
        return g / x


def log(x):
    """Elementwise natural logarithm (x > 0)."""
    return Log.apply(x)


class Sqrt(Function):
    """y = sqrt(x), for x > 0."""

    @staticmethod
    def forward(ctx, x):
        y = array_module(x).sqrt(x)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        """dy/dx = 1 / (2 sqrt(x)) = 1 / (2y)."""
        (y,) = ctx.saved
        return g / (2 * y)


def sqrt(x):
    """Elementwise square root (x > 0 for a finite gradient)."""
    return Sqrt.apply(x)


# ---------------------------------------------------------------- activations


class ReLU(Function):
    """y = max(x, 0)."""

    @staticmethod
    def forward(ctx, x):
        y = relu_kernels.relu_forward(x)  # one pass under numba (kernels/relu.py), np.maximum otherwise
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        """dy/dx = 1 where x > 0, else 0 (we take 0 at the kink x = 0). y > 0 exactly where x > 0, so
        dL/dx = g · [y > 0]."""
        (y,) = ctx.saved
        return relu_kernels.relu_backward(g, y)


def relu(x):
    """Rectified linear unit, max(x, 0); its gradient at 0 is taken to be 0."""
    return ReLU.apply(x)


class LeakyReLU(Function):
    """y = x for x > 0, slope * x otherwise."""

    @staticmethod
    def forward(ctx, x, slope):
        xp = array_module(x)
        ctx.save(x)
        ctx.slope = slope
        return xp.where(x > 0, x, x * slope)

    @staticmethod
    def backward(ctx, g):
        """dy/dx = 1 for x > 0, slope otherwise."""
        (x,) = ctx.saved
        xp = array_module(x)
        return g * xp.where(x > 0, 1.0, ctx.slope).astype(g.dtype)


def leaky_relu(x, negative_slope=0.01):
    """Leaky ReLU: x for x > 0, ``negative_slope * x`` otherwise."""
    return LeakyReLU.apply(x, slope=float(negative_slope))


class Tanh(Function):
    """y = tanh(x)."""

    @staticmethod
    def forward(ctx, x):
        y = array_module(x).tanh(x)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        """dy/dx = 1 - tanh²(x) = 1 - y²."""
        (y,) = ctx.saved
        return g * (1 - y * y)


def tanh(x):
    return Tanh.apply(x)


def stable_sigmoid(x):
    """σ(x) = 1 / (1 + e^−x) with full relative precision for every x and no overflow.

    Written as it stands, e^−x overflows for x < −88.7 in float32 (a warning, and σ = 0 where the true
    value, down to 1e−45, is still representable). The two-branch form avoids that: with e = e^−|x| ∈ [0, 1],

        σ(x) = 1 / (1 + e)        for x ≥ 0   (there e = e^−x),
        σ(x) = e^x / (e^x + 1)    for x < 0   (numerator and denominator times e^x; there e = e^x)
             = e / (1 + e),

    so both branches share the denominator 1 + e ∈ [1, 2] and only the numerator, 1 or e, is picked.
    (The shortcut (1 + tanh(x/2)) / 2 also never overflows, but for x < 0 it subtracts two numbers near 1,
    so σ(−20) has only 8 correct digits and σ(−40) = 4e−18 comes out as 0.) The Bernoulli log-probability
    computes σ on every pixel with a faster, branch-free form of the same two cases, tested against this one
    (kernels/bernoulli_parts.py, sigmoid_from_e).
    """
    xp = array_module(x)
    e = xp.exp(-xp.abs(x))  # e^−|x| ∈ [0, 1]: never overflows
    return xp.where(x >= 0, 1, e) / (1 + e)  # 1 / (1 + e) for x ≥ 0, e / (1 + e) for x < 0


class Sigmoid(Function):
    """y = σ(x) = 1 / (1 + e^-x), computed by :func:`stable_sigmoid`, which never overflows."""

    @staticmethod
    def forward(ctx, x):
        y = stable_sigmoid(x)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        """dσ/dx = e^-x / (1 + e^-x)² = σ(x)(1 - σ(x)) = y(1 - y)."""
        (y,) = ctx.saved
        return g * y * (1 - y)


def sigmoid(x):
    return Sigmoid.apply(x)


class Softplus(Function):
    """y = log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|) so that e^x never overflows."""

    @staticmethod
    def forward(ctx, x):
        xp = array_module(x)
        ctx.save(x)
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    @staticmethod
    def backward(ctx, g):
        """dy/dx = e^x / (1 + e^x) = σ(x)."""
        (x,) = ctx.saved
        return g * stable_sigmoid(x)


def softplus(x):
    """log(1 + e^x), accurate for large |x| in both directions."""
    return Softplus.apply(x)
