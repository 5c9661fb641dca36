"""tinyvae: variational autoencoders from scratch on NumPy, with a small autodiff engine whose every
backward pass is written by hand (see ``tinyvae/ops``) and checked against finite differences.

``import tinyvae`` runs this file and nothing else: the names in ``__all__`` are imported when first used
(``tv.Tensor``, ``tv.nn``; Python calls :func:`__getattr__` below for a name the module does not hold yet),
and NumPy with them. So importing tinyvae changes nothing in your process, and the ``tinyvae`` command
(tinyvae/__main__.py) can choose OpenBLAS's kernels before anything has loaded NumPy.

That choice (tinyvae/blas_tuning.py) is made only by the ``tinyvae`` command and the benchmarks, unless you
ask for it: with ``TINYVAE_BLAS_TUNING=1``, ``import tinyvae`` makes it too, if it runs before
``import numpy``. It matters on AMD Zen 4, where OpenBLAS's AVX2 kernels ran the matmuls of a VAE step 4-8%
faster and the codebook search's 26% faster than the AVX-512 ones it picks itself (benchmarks/RESULTS.md,
"OpenBLAS kernel choice"). ``TINYVAE_BLAS_TUNING=0`` turns it off everywhere; an ``OPENBLAS_CORETYPE`` you
set yourself always wins.
"""

import importlib
import os

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
_SUBMODULES = ("backend", "evaluate", "functional", "models", "nn", "optim")

if os.environ.get("TINYVAE_BLAS_TUNING") == "1":
    from tinyvae import blas_tuning

    blas_tuning.apply()


def __getattr__(name):
    """``tv.<name>`` the first time: a submodule is imported alone (this is also what ``from tinyvae import
    nn`` inside tinyvae goes through); any other public name imports the library, as ``import tinyvae`` did
    when it loaded everything at once."""
    if name in _SUBMODULES:
        return importlib.import_module(f"tinyvae.{name}")
    if name not in __all__:
        raise AttributeError(f"module 'tinyvae' has no attribute {name!r}")
    _import_the_library()
    return globals()[name]


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _import_the_library():
    """Bind every name in ``__all__``: the imports ``import tinyvae`` ran before it became lazy."""
    global DEFAULT_DTYPE, GradcheckError, GraphError, Tensor, backend, broadcast_to, concatenate, evaluate
    global functional, gradcheck, is_grad_enabled, models, nn, no_grad, optim, stack, sum_to_shape
    from tinyvae import backend, evaluate, functional, models, nn, optim
    from tinyvae.autodiff import GraphError, is_grad_enabled, no_grad, sum_to_shape
    from tinyvae.functional import broadcast_to, concatenate, stack
    from tinyvae.gradcheck import GradcheckError, gradcheck  # after the module: tv.gradcheck is the function
    from tinyvae.tensor import DEFAULT_DTYPE, Tensor
