"""Which array module holds tensor data: the ``xp`` idiom (as in chainer) without branches in the ops.

Op bodies are written once against the NumPy API and get their module from their inputs with
:func:`array_module`, so the same body runs on NumPy arrays and, once the GPU backend lands, on CuPy
arrays. New tensors built from Python data use :func:`default_array_module`.
"""

from __future__ import annotations

import numpy


def default_array_module():
    """The module new tensors are created in (NumPy until a GPU backend is selected)."""
    return numpy


def array_module(*arrays):
    """The array module of ``arrays``: CuPy if any of them is a CuPy array, else NumPy."""
    for a in arrays:
        module = type(a).__module__
        if module.startswith("cupy"):
            import cupy

            return cupy
    return numpy


def info() -> dict:
    """Which backend runs, and the versions behind it."""
    return {"backend": "numpy", "reason": "the only backend so far", "numpy": numpy.__version__}
