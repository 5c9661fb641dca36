"""Every differentiable op, one class each with its forward and backward side by side."""

from tinyvae.ops.elementwise import (
    add,
    div,
    exp,
    leaky_relu,
    log,
    mul,
    neg,
    power,
    relu,
    sigmoid,
    softplus,
    sqrt,
    sub,
    tanh,
)
from tinyvae.ops.gaussian import gaussian_kl, reparameterize
from tinyvae.ops.likelihood import bernoulli_log_prob, gaussian_log_prob
from tinyvae.ops.linalg import linear, matmul
from tinyvae.ops.quantize import vector_quantize
from tinyvae.ops.reduce import log_softmax, logsumexp, max, mean, sum  # noqa: A004
from tinyvae.ops.shape import broadcast_to, concatenate, getitem, reshape, stack, transpose

__all__ = [
    "add",
    "bernoulli_log_prob",
    "broadcast_to",
    "concatenate",
    "div",
    "exp",
    "gaussian_kl",
    "gaussian_log_prob",
    "getitem",
    "leaky_relu",
    "linear",
    "log",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max",
    "mean",
    "mul",
    "neg",
    "power",
    "relu",
    "reparameterize",
    "reshape",
    "sigmoid",
    "softplus",
    "sqrt",
    "stack",
    "sub",
    "sum",
    "tanh",
    "transpose",
    "vector_quantize",
]
