"""``import tinyvae.functional as F``: the differentiable functions a model is written with.

Each one applies an op class from :mod:`tinyvae.ops` (forward and hand-written backward side by side).
"""

from tinyvae.ops import (
    bernoulli_log_prob,
    broadcast_to,
    clamp_logvar,
    concatenate,
    exp,
    gaussian_kl,
    gaussian_log_prob,
    leaky_relu,
    linear,
    log,
    log_softmax,
    logsumexp,
    matmul,
    max,  # noqa: A004
    mean,
    relu,
    reparameterize,
    reshape,
    sigmoid,
    soft_clamp,
    softplus,
    sqrt,
    stack,
    sum,  # noqa: A004
    tanh,
    transpose,
    vector_quantize,
)

__all__ = [
    "bernoulli_log_prob",
    "broadcast_to",
    "clamp_logvar",
    "concatenate",
    "exp",
    "gaussian_kl",
    "gaussian_log_prob",
    "leaky_relu",
    "linear",
    "log",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max",
    "mean",
    "relu",
    "reparameterize",
    "reshape",
    "sigmoid",
    "soft_clamp",
    "softplus",
    "sqrt",
    "stack",
    "sum",
    "tanh",
    "transpose",
    "vector_quantize",
]
