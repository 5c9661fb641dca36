"""Every differentiable op, one class each with its forward and backward side by side.

``__all__`` below is the list of public functions; :mod:`tinyvae.functional` (``F``) exports the same list.
"""

from tinyvae.ops.attention import causal_attention, embedding, layer_norm
from tinyvae.ops.conv import conv2d, conv_transpose2d
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
from tinyvae.ops.gaussian import clamp_logvar, gaussian_kl, reparameterize, soft_clamp
from tinyvae.ops.likelihood import bernoulli_log_prob, gaussian_log_prob
from tinyvae.ops.linalg import linear, matmul
from tinyvae.ops.quantize import vector_quantize
from tinyvae.ops.reduce import log_softmax, logsumexp, max, mean, sum  # noqa: A004
from tinyvae.ops.shape import broadcast_to, concatenate, getitem, reshape, stack, transpose

__all__ = [
    "add",
    "bernoulli_log_prob",
    "broadcast_to",
    "causal_attention",
    "clamp_logvar",
    "concatenate",
    "conv2d",
    "conv_transpose2d",
    "div",
    "embedding",
    "exp",
    "gaussian_kl",
    "gaussian_log_prob",
    "getitem",
    "layer_norm",
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
    "soft_clamp",
    "softplus",
    "sqrt",
    "stack",
    "sub",
    "sum",
    "tanh",
    "transpose",
    "vector_quantize",
]
