"""The reductions' hand-written backwards agree with central finite differences (``tv.gradcheck``, float64)
over every ``axis`` argument (None, one axis, negative axes, tuples, the empty tuple) and ``keepdims``;
logsumexp and log_softmax also stay exact at extreme inputs (magnitude 1e4, and -inf entries).

Margins. ``max`` is not differentiable where two candidates tie, so its inputs are spread to be at least
1e-3 apart (``distinct``), far more than the step h ≤ 3e-6. logsumexp and log_softmax are smooth
everywhere (the max-shift is an implementation detail that cancels), so they need no margin.
"""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import axes, distinct, leaf, nonscalar_shapes, shapes, tensors, values

import tinyvae as tv
from tinyvae import ops

TIE_GAP = 1e-3  # max inputs are at least this far apart


def _numpy_logsumexp(x, axis, keepdims=False):
    """Reference: log Σ exp(x) with the max shift, written directly in NumPy."""
    m = numpy.max(x, axis=axis, keepdims=True)
    y = m + numpy.log(numpy.sum(numpy.exp(x - m), axis=axis, keepdims=True))
    return y if keepdims else numpy.squeeze(y, axis=axis)


@pytest.mark.parametrize(
    ("op", "reference"), [(ops.sum, numpy.sum), (ops.mean, numpy.mean)], ids=["sum", "mean"]
)
@given(data=st.data())
def test_sum_and_mean(op, reference, data):
    """d(Σ_group x)/dx_i = 1 and d(mean_group x)/dx_i = 1/n for every x_i in its group, for every axis
    argument with and without keepdims; the forward equals NumPy's."""
    shape = data.draw(shapes)
    x = data.draw(tensors(shape))
    axis, keepdims = data.draw(axes(len(shape))), data.draw(st.booleans())
    y = op(x, axis=axis, keepdims=keepdims)
    numpy_axis = None if x.ndim == 0 else axis  # numpy.mean refuses axis=0 on a 0-d array; tinyvae allows it
    numpy.testing.assert_allclose(y.data, reference(x.data, axis=numpy_axis, keepdims=keepdims), rtol=1e-14)
    assert tv.gradcheck(lambda t: op(t, axis=axis, keepdims=keepdims), [x], name=f"{op.__name__}({axis})")


@given(data=st.data())
def test_max_gradient_goes_to_the_unique_maximum(data):
    """d(max_group x)/dx_i is 1 for the largest x_i of its group and 0 for the others, with all entries
    at least 1e-3 apart so the winner is unique and a finite-difference step cannot change it."""
    shape = data.draw(shapes)
    x = leaf(distinct(data.draw(values(shape)), gap=TIE_GAP))
    axis, keepdims = data.draw(axes(len(shape))), data.draw(st.booleans())
    numpy.testing.assert_array_equal(
        ops.max(x, axis, keepdims).data, numpy.max(x.data, axis, keepdims=keepdims)
    )
    assert tv.gradcheck(lambda t: ops.max(t, axis, keepdims), [x], name=f"max({axis})")


def test_max_shares_the_gradient_between_tied_maxima():
    """At an exact tie max has no derivative; tinyvae splits the gradient equally between the tied
    entries (the average of the one-sided derivatives), as ``Max.backward`` documents."""
    x = leaf([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]])
    ops.max(x, axis=1).backward(numpy.array([1.0, 4.0]))
    numpy.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [4.0, 0.0, 0.0]])


@given(data=st.data())
def test_logsumexp_gradient_is_softmax(data):
    """d log Σ_j e^(x_j) / dx_i = e^(x_i) / Σ_j e^(x_j), the softmax, over every axis argument (default
    the last); the forward equals the NumPy reference."""
    shape = data.draw(nonscalar_shapes)
    x = data.draw(tensors(shape, low=-5.0, high=5.0))
    axis, keepdims = data.draw(axes(len(shape))), data.draw(st.booleans())
    numpy.testing.assert_allclose(
        ops.logsumexp(x, axis, keepdims).data, _numpy_logsumexp(x.data, axis, keepdims), rtol=1e-13
    )
    assert tv.gradcheck(lambda t: ops.logsumexp(t, axis, keepdims), [x], name=f"logsumexp({axis})")
    assert tv.gradcheck(ops.logsumexp, [x], name="logsumexp(default axis -1)")


@given(
    x=nonscalar_shapes.flatmap(lambda shape: values(shape, low=-1.0, high=1.0)), sign=st.sampled_from([1, -1])
)
def test_logsumexp_at_magnitude_1e4_is_finite_with_softmax_gradient(x, sign):
    """For inputs near ±1e4 (e^10000 overflows float64) logsumexp is finite, equals
    m + log Σ e^(x − m), and its gradient is exactly the softmax of the row."""
    x = leaf(sign * 1e4 + x)
    y = ops.logsumexp(x, axis=-1)
    assert numpy.all(numpy.isfinite(y.data))
    numpy.testing.assert_allclose(y.data, _numpy_logsumexp(x.data, -1), rtol=1e-15)
    y.sum().backward()
    shifted = numpy.exp(x.data - x.data.max(axis=-1, keepdims=True))
    softmax = shifted / shifted.sum(axis=-1, keepdims=True)
    numpy.testing.assert_allclose(x.grad, softmax, rtol=1e-10, atol=1e-15)


def test_logsumexp_with_minus_infinity_entries():
    """An entry of −inf contributes e^(−inf) = 0: it gets zero gradient and the row's value is the
    logsumexp of its other entries; a row that is all −inf has value −inf and zero gradient (no NaN)."""
    inf = numpy.inf
    x = leaf([[0.5, -inf, 2.0], [-inf, -inf, -inf], [-inf, 1.0, -inf]])
    with numpy.errstate(all="raise"):  # no invalid-value or overflow warning on the way
        y = ops.logsumexp(x, axis=-1)
        y.backward(numpy.array([1.0, 1.0, 3.0]))
    numpy.testing.assert_allclose(y.data, [numpy.logaddexp(0.5, 2.0), -inf, 1.0], rtol=1e-15)
    softmax_row0 = numpy.exp(numpy.array([0.5, 2.0]) - numpy.logaddexp(0.5, 2.0))
    numpy.testing.assert_allclose(x.grad[0, [0, 2]], softmax_row0, rtol=1e-14)
    numpy.testing.assert_array_equal(x.grad[0, 1], 0.0)
    numpy.testing.assert_array_equal(x.grad[1], [0.0, 0.0, 0.0])
    numpy.testing.assert_array_equal(x.grad[2], [0.0, 3.0, 0.0])


@given(x=st.tuples(st.integers(1, 3), st.integers(1, 3)).flatmap(tensors), masked=st.integers(1, 3))
def test_logsumexp_gradcheck_with_fixed_minus_infinity_columns(x, masked):
    """With −inf entries held fixed beside finite ones, logsumexp's gradient with respect to the finite
    entries still matches finite differences (the −inf columns drop out of the softmax)."""
    minus_inf = tv.Tensor(numpy.full((x.shape[0], masked), -numpy.inf))

    def padded_logsumexp(t):
        return ops.logsumexp(tv.concatenate([minus_inf, t], axis=1), axis=1)

    assert tv.gradcheck(padded_logsumexp, [x])


@given(data=st.data())
def test_log_softmax(data):
    """log_softmax(x)_i = x_i − logsumexp(x): its rows exponentiate and sum to 1, its gradient
    g_j − softmax_j Σ_i g_i matches finite differences, along any one axis."""
    shape = data.draw(nonscalar_shapes)
    x = data.draw(tensors(shape, low=-5.0, high=5.0))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    y = ops.log_softmax(x, axis=axis)
    numpy.testing.assert_allclose(numpy.exp(y.data).sum(axis=axis), 1.0, rtol=1e-14)
    numpy.testing.assert_allclose(y.data, x.data - _numpy_logsumexp(x.data, axis, keepdims=True), atol=1e-13)
    assert tv.gradcheck(lambda t: ops.log_softmax(t, axis=axis), [x], name=f"log_softmax({axis})")


def test_log_softmax_at_magnitude_1e4_is_finite():
    """log_softmax of [1e4, 1e4 − 1, −1e4] is finite and exact, since only differences x_i − max x enter."""
    x = leaf([1e4, 1e4 - 1.0, -1e4])
    y = ops.log_softmax(x)
    expected = numpy.array([0.0, -1.0, -2e4]) - numpy.log1p(numpy.exp(-1.0))
    numpy.testing.assert_allclose(y.data, expected, rtol=1e-15)
