"""tinyvae: variational autoencoders from scratch on NumPy, with a small autodiff engine whose every
backward pass is written by hand (see ``tinyvae/ops``) and checked against finite differences."""

from tinyvae import backend, evaluate, functional, models, nn, optim
from tinyvae.autodiff import GraphError, is_grad_enabled, no_grad, sum_to_shape
from tinyvae.gradcheck import GradcheckError, gradcheck
from tinyvae.ops import broadcast_to, concatenate, stack
from tinyvae.tensor import DEFAULT_DTYPE, Tensor

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_DTYPE",
    "GradcheckError",
    "GraphError",
    "Tensor",
    "backend",
    "broadcast_to",
    "concatenate",
    "evaluate",
    "functional",
    "gradcheck",
    "is_grad_enabled",
    "models",
    "nn",
    "no_grad",
    "optim",
    "stack",
    "sum_to_shape",
]
