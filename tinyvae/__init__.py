"""tinyvae: variational autoencoders from scratch on NumPy, with a small autodiff engine whose every
backward pass is written by hand (see ``tinyvae/ops``) and checked against finite differences."""

# OpenBLAS picks its kernels when NumPy first loads it, so this runs before anything imports NumPy
# (see tinyvae/blas_tuning.py for the rule and the measurements behind it).
from tinyvae import blas_tuning  # isort: skip

blas_tuning.apply()

from tinyvae import backend, evaluate, functional, models, nn, optim  # noqa: E402
from tinyvae.autodiff import GraphError, is_grad_enabled, no_grad, sum_to_shape  # noqa: E402
from tinyvae.gradcheck import GradcheckError, gradcheck  # noqa: E402
from tinyvae.ops import broadcast_to, concatenate, stack  # noqa: E402
from tinyvae.tensor import DEFAULT_DTYPE, Tensor  # noqa: E402

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
