"""``gradcheck``: compare every hand-written backward with central finite differences, in float64.

The check reduces the outputs to one number with a fixed random projection, L = Σ_i ⟨v_i, y_i⟩, so one
backward pass (seeded with v) gives dL/dx for every input element at once, and compares it, element by
element, with the central difference

    (L(x + h e_j) − L(x − h e_j)) / 2h,   h = 1e-6 · max(1, ‖x‖_∞).

The step scales with the input so that an input of magnitude 1e5 is not perturbed below its own
rounding. The error of a central difference is O(h²) from truncation plus about ε·Σ|v·y| / h from
rounding the two evaluations of L (ε = 2.2e-16 in float64), so an element passes when

    |analytic − numeric| ≤ atol + rtol · max(|analytic|, |numeric|) + 16 ε Σ|v·y| / 2h.

In float32 the rounding term alone would be ~1e-1 of a unit gradient, which is why float32 is refused.
"""

from __future__ import annotations

import sys
import types

import numpy

from tinyvae.autodiff import no_grad
from tinyvae.tensor import Tensor


class GradcheckError(AssertionError):
    """A backward pass disagrees with finite differences (the message says where and by how much)."""


def _as_tuple(outputs):
    outputs = outputs if isinstance(outputs, tuple | list) else (outputs,)
    return tuple(y for y in outputs if isinstance(y, Tensor))  # integer outputs (indices) are skipped


def _projected(outputs, projections):
    """L = Σ_i ⟨v_i, y_i⟩ in float64, and Σ_i Σ|v_i y_i| (the scale of its rounding error)."""
    total = scale = 0.0
    for y, v in zip(outputs, projections, strict=True):
        terms = numpy.asarray(y.numpy(), dtype=numpy.float64) * v
        total += float(terms.sum())
        scale += float(numpy.abs(terms).sum())
    return total, scale


def gradcheck(fn, inputs, *, rtol=1e-5, atol=1e-8, step=1e-6, seed=0, name=None):
    """Check ``fn``'s gradients with respect to every input that has ``requires_grad=True``.

    ``fn(*inputs)`` returns a Tensor or a tuple of them (non-Tensor outputs are ignored). ``inputs`` is a
    list or tuple (``[x]`` for one input); its tensors must be float64 and finite (a ValueError names a
    NaN or inf input); other arguments (indices, settings) may sit among them and are passed unchanged.
    Returns True, or raises :class:`GradcheckError` naming the op, the input, the worst element, both
    values and the tolerance.
    """
    label = name or getattr(fn, "__name__", "fn")
    if not callable(fn):
        raise TypeError(f"gradcheck: fn must be a function of the inputs, got a {type(fn).__name__}")
    if not isinstance(inputs, list | tuple):
        shown = "a Tensor" if isinstance(inputs, Tensor) else f"a {type(inputs).__name__}"
        raise TypeError(
            f"gradcheck({label}): inputs must be a list or tuple of the arguments of fn, got {shown}; "
            "for one input write gradcheck(fn, [x])"
        )
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and not numpy.isfinite(x.numpy()).all():
            first = numpy.unravel_index(int(numpy.argmin(numpy.isfinite(x.numpy()))), x.shape)
            value = float(x.numpy()[first])
            raise ValueError(
                f"gradcheck({label}): input {i} holds {value!r} at element {tuple(int(k) for k in first)}; "
                "finite differences need finite inputs (NaN or inf there would make every comparison fail "
                "or pass by accident)"
            )
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError(f"gradcheck({label}): no input has requires_grad=True, so nothing is checked")
    for i in checked:
        if inputs[i].dtype != numpy.float64:
            raise TypeError(
                f"gradcheck({label}): input {i} has dtype {inputs[i].dtype}; gradients are checked in "
                "float64, since float32 rounding swamps a finite difference (its error would be ~1e-2 "
                "of the gradient). Build the inputs with dtype=numpy.float64."
            )

    outputs = _as_tuple(fn(*inputs))
    if not outputs:
        raise ValueError(f"gradcheck({label}): fn returned no Tensor")
    rng = numpy.random.default_rng(seed)
    projections = [rng.standard_normal(y.shape) for y in outputs]

    # Analytic: one backward pass per output, seeded with its projection, into fresh .grad slots.
    saved_grads = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    for y, v in zip(outputs, projections, strict=True):
        if y.requires_grad:
            y.backward(v, retain_graph=True)
    analytic = {i: inputs[i].grad for i in checked}
    for i, grad in zip(checked, saved_grads, strict=True):
        inputs[i].grad = grad

    # Numeric: central differences, one element at a time.
    for i in checked:
        x = inputs[i].data
        h = step * max(1.0, float(numpy.abs(x).max(initial=0.0)))
        numeric = numpy.zeros(x.shape)
        noise = numpy.zeros(x.shape)
        with no_grad():
            for j in numpy.ndindex(x.shape):
                original = x[j]
                x[j] = original + h
                plus, scale_plus = _projected(_as_tuple(fn(*inputs)), projections)
                x[j] = original - h
                minus, scale_minus = _projected(_as_tuple(fn(*inputs)), projections)
                x[j] = original
                numeric[j] = (plus - minus) / (2 * h)
                noise[j] = 16 * numpy.finfo(numpy.float64).eps * (scale_plus + scale_minus) / (4 * h)
        got = numpy.zeros(x.shape) if analytic[i] is None else numpy.asarray(analytic[i])
        tolerance = atol + rtol * numpy.maximum(numpy.abs(got), numpy.abs(numeric)) + noise
        excess = numpy.abs(got - numeric) - tolerance
        if not numpy.all(excess <= 0):  # also catches NaN
            worst = numpy.unravel_index(
                numpy.nanargmax(numpy.where(numpy.isnan(excess), numpy.inf, excess)), x.shape
            )
            raise GradcheckError(
                f"gradcheck({label}): input {i}, element {tuple(int(k) for k in worst)}: backward gives "
                f"{got[worst]!r} but finite differences give {numeric[worst]!r} "
                f"(|difference| {abs(got[worst] - numeric[worst]):.3g} > tolerance {tolerance[worst]:.3g})"
            )
    return True


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`gradcheck`. ``tv.gradcheck`` is meant to be the function, but
    ``import tinyvae`` is lazy (tinyvae/__init__.py), and importing this module sets the package's
    attribute ``gradcheck`` to the module itself, after this file has run: a script that does
    ``from tinyvae.gradcheck import GradcheckError`` and then calls ``tv.gradcheck(...)`` would call a
    module. Calling the module calls the function, so both spellings work in any order."""

    def __call__(self, fn, inputs, **options):
        return gradcheck(fn, inputs, **options)


sys.modules[__name__].__class__ = _CallableModule
