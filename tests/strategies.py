"""Hypothesis strategies for the gradient tests: shapes (scalars and size-1 dims included), broadcasting
pairs, and float64 tensors whose values stay a stated margin away from an op's singularities and kinks."""

import numpy
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyvae as tv

# Small shapes keep finite differences cheap (two evaluations per element): at most 3 dims of size <= 4.
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
nonscalar_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def broadcastable_shapes(num_shapes=2, min_dims=0):
    """Tuples of shapes that broadcast together, e.g. ((3, 1), (4,)) -> (3, 4)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=3, min_side=1, max_side=4
    ).map(lambda result: result.input_shapes)


def values(shape, low=-3.0, high=3.0):
    """float64 arrays of ``shape`` with entries in [low, high]."""
    return hnp.arrays(
        numpy.float64, shape, elements=st.floats(low, high, allow_nan=False, allow_infinity=False)
    )


def away_from(array, points, margin):
    """Move entries that fall within ``margin`` of any of ``points`` out to distance ``margin``, so a
    finite difference never straddles a kink (relu at 0) or a singularity (log at 0)."""
    array = array.copy()
    for point in points:
        close = numpy.abs(array - point) < margin
        array[close] = point + numpy.where(array[close] >= point, margin, -margin)
    return array


def distinct(array, gap=1e-3):
    """Spread entries so no two are within ``gap``: max and argmin-like ops then have a unique winner and
    a perturbation of 1e-6 cannot change it. Keeps the order of the values."""
    flat = array.ravel().copy()
    order = numpy.argsort(flat, kind="stable")
    flat[order] = flat[order] + gap * numpy.arange(flat.size)
    return flat.reshape(array.shape)


def leaf(array):
    """A float64 leaf tensor that requires grad."""
    return tv.Tensor(numpy.asarray(array, dtype=numpy.float64), requires_grad=True)
