"""Hypothesis strategies for the gradient tests: shapes (scalars and size-1 dims included), broadcasting
pairs, and float64 tensors whose values stay a stated margin away from an op's singularities and kinks."""

import numpy
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyvae as tv

# Small shapes keep finite differences cheap (two evaluations per element): at most 3 dims of size <= 4.
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
nonscalar_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4):
    """Tuples of shapes that broadcast together, e.g. ((3, 1), (4,)) -> (3, 4)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side
    ).map(lambda result: result.input_shapes)


@st.composite
def broadcast_pairs(draw, min_dims=0):
    """(shape, target) with ``shape`` broadcastable *to* ``target``: each of its dims is the target's or 1,
    and some leading dims of the target may be missing, e.g. ((4, 1), (2, 4, 3))."""
    target = draw(hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=1, max_side=4))
    kept = draw(st.integers(0, len(target)))
    tail = target[len(target) - kept :]
    shape = tuple(draw(st.sampled_from([n, 1])) for n in tail)
    return shape, target


def axes(ndim):
    """An ``axis`` argument for a reduction over ``ndim`` dims: None, one axis (negative allowed) or a
    tuple of distinct axes (possibly empty)."""
    if ndim == 0:
        return st.sampled_from([None, 0, -1, ()])
    single = st.integers(-ndim, ndim - 1)
    several = st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim).map(tuple)
    return st.none() | single | several


@st.composite
def matmul_shapes(draw):
    """Shapes (a, b) that ``a @ b`` accepts: matrices with broadcast batch dims, or 1-D vectors on
    either side, e.g. ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 3)), ((3, 4), (4,))."""
    m, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch_a, batch_b = draw(broadcastable_shapes(max_dims=2, max_side=3))
    shape_a = (k,) if draw(st.booleans()) else batch_a + (m, k)
    shape_b = (k,) if draw(st.booleans()) else batch_b + (k, n)
    return shape_a, shape_b


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


def tensors(shape, low=-3.0, high=3.0, avoid=(), margin=0.0):
    """Leaf tensors of ``shape`` with values in [low, high], kept ``margin`` away from each of ``avoid``."""
    return values(shape, low, high).map(lambda array: leaf(away_from(array, avoid, margin)))


def leaf(array):
    """A float64 leaf tensor that requires grad."""
    return tv.Tensor(numpy.asarray(array, dtype=numpy.float64), requires_grad=True)
