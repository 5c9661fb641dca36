"""matmul, linear and the shape ops (reshape, transpose, indexing, concatenate, stack, broadcast_to): their
hand-written backwards agree with central finite differences (``tv.gradcheck``, float64), their forwards
with NumPy, and a bad shape is refused with a ValueError that names the op and the shapes.

All of these ops are linear or piecewise-linear in each input with no kinks, so any values will do.
"""

import re

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import broadcast_pairs, leaf, matmul_shapes, nonscalar_shapes, shapes, tensors, values

import tinyvae as tv
from tinyvae import ops

# ---------------------------------------------------------------- matmul and linear


@given(data=st.data())
def test_matmul_gradients(data):
    """For Y = A @ B, dL/dA = G Bᵀ and dL/dB = Aᵀ G, summed over broadcast batch dims, with 1-D operands
    treated as a row (on the left) or a column (on the right) as NumPy does; Y equals NumPy's A @ B."""
    shape_a, shape_b = data.draw(matmul_shapes())
    a, b = data.draw(tensors(shape_a)), data.draw(tensors(shape_b))
    numpy.testing.assert_allclose((a @ b).data, a.data @ b.data, rtol=1e-14)
    assert tv.gradcheck(ops.matmul, [a, b])


@given(
    x=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    in_features=st.integers(1, 4),
    out_features=st.integers(1, 4),
    with_bias=st.booleans(),
    data=st.data(),
)
def test_linear_gradients(x, in_features, out_features, with_bias, data):
    """For y = x W + b with any leading batch dims on x, dL/dx = G Wᵀ, dL/dW = Σ_rows xᵀ G and
    dL/db = Σ_rows G; with and without the bias, and y equals NumPy's x @ W + b."""
    x = data.draw(tensors(x + (in_features,)))
    W = data.draw(tensors((in_features, out_features)))
    b = data.draw(tensors((out_features,))) if with_bias else None
    expected = x.data @ W.data + (b.data if with_bias else 0.0)
    numpy.testing.assert_allclose(ops.linear(x, W, b).data, expected, rtol=1e-14)
    inputs = [x, W, b] if with_bias else [x, W]
    assert tv.gradcheck(ops.linear, inputs, name=f"linear(bias={with_bias})")


# ---------------------------------------------------------------- moving elements around


def _reshape_targets(shape):
    """Shapes with the same number of elements as ``shape`` (one of them spelled with -1)."""
    size = int(numpy.prod(shape))
    return st.sampled_from([(size,), (1, size), (size, 1), tuple(reversed(shape)), (-1,), shape + (1,)])


@given(data=st.data())
def test_reshape_gradient_is_reshaped_back(data):
    """Reshape keeps the elements in order, so the gradient is the incoming one read in the input's
    shape; the forward equals numpy.reshape."""
    shape = data.draw(shapes)
    x, target = data.draw(tensors(shape)), data.draw(_reshape_targets(shape))
    numpy.testing.assert_array_equal(x.reshape(target).data, x.data.reshape(target))
    assert tv.gradcheck(lambda t: t.reshape(target), [x], name=f"reshape{target}")


@given(data=st.data())
def test_transpose_gradient_is_inverse_permutation(data):
    """Transposing by a permutation p sends axis p[i] to axis i, so the gradient is transposed back by
    the inverse permutation; ``.T`` reverses all axes."""
    shape = data.draw(shapes)
    x = data.draw(tensors(shape))
    permutation = tuple(data.draw(st.permutations(range(len(shape)))))
    numpy.testing.assert_array_equal(x.transpose(permutation).data, x.data.transpose(permutation))
    assert tv.gradcheck(lambda t: t.transpose(permutation), [x], name=f"transpose{permutation}")
    assert tv.gradcheck(lambda t: t.T, [x], name=".T")


@given(data=st.data())
def test_basic_indexing_gradient_lands_on_the_selected_elements(data):
    """x[index] with ints, slices (any step), None and Ellipsis reads each element at most once: the
    gradient is the incoming one at the selected positions and zero elsewhere."""
    shape = data.draw(nonscalar_shapes)
    x = data.draw(tensors(shape))
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    numpy.testing.assert_array_equal(x[index].data, x.data[index])
    assert tv.gradcheck(lambda t: t[index], [x], name=f"x[{index}]")


@given(data=st.data())
def test_integer_array_indexing_with_repeated_indices_accumulates(data):
    """x[[i, j, i]] reads x_i twice, so x_i's gradient is the *sum* of both incoming gradients
    (scatter-add, as numpy.add.at); checked against finite differences and against add.at directly."""
    shape = data.draw(nonscalar_shapes)
    x = data.draw(tensors(shape))
    picks = data.draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=1, max_size=5))
    index = numpy.array(picks + [picks[0]])  # at least one index repeated
    assert tv.gradcheck(lambda t: t[index], [x], name=f"x[{index.tolist()}]")
    g = numpy.random.default_rng(0).standard_normal((len(index),) + shape[1:])
    x[index].backward(g)
    expected = numpy.zeros(shape)
    numpy.add.at(expected, index, g)
    numpy.testing.assert_allclose(x.grad, expected, rtol=1e-15)


@given(data=st.data())
def test_integer_array_indices_on_several_axes(data):
    """x[rows, cols] with integer arrays on several axes (hypothesis picks them, repeats included) sends
    each incoming gradient element back to the one x element it read, adding up repeats."""
    shape = data.draw(nonscalar_shapes)
    x = data.draw(tensors(shape))
    index = data.draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(max_dims=2, max_side=4)))
    numpy.testing.assert_array_equal(x[index].data, x.data[index])
    assert tv.gradcheck(lambda t: t[index], [x], name="x[integer arrays]")


@given(data=st.data())
def test_boolean_mask_gradient_is_zero_where_masked_out(data):
    """x[mask] keeps the entries where mask is True: they receive the incoming gradient, the rest 0."""
    shape = data.draw(nonscalar_shapes)
    x = data.draw(tensors(shape))
    mask = data.draw(hnp.arrays(bool, shape))
    numpy.testing.assert_array_equal(x[mask].data, x.data[mask])
    assert tv.gradcheck(lambda t: t[mask], [x], name="x[mask]")


@given(data=st.data())
def test_concatenate_gradient_is_split_back(data):
    """Concatenation along an axis places each input in its own slab, so each input's gradient is its
    slab of the incoming gradient; 1 to 3 inputs of different lengths along that axis."""
    shape = data.draw(nonscalar_shapes)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    lengths = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    parts = []
    for length in lengths:
        part_shape = list(shape)
        part_shape[axis] = length
        parts.append(data.draw(tensors(tuple(part_shape))))
    numpy.testing.assert_array_equal(
        tv.concatenate(parts, axis=axis).data, numpy.concatenate([p.data for p in parts], axis=axis)
    )
    assert tv.gradcheck(lambda *ts: tv.concatenate(list(ts), axis=axis), parts, name=f"concatenate({axis})")


@given(data=st.data())
def test_stack_gradient_is_sliced_back(data):
    """Stacking along a new axis puts input i at index i of that axis, so its gradient is slice i of the
    incoming gradient; scalars can be stacked, and the axis may be negative."""
    shape = data.draw(shapes)
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    parts = [data.draw(tensors(shape)) for _ in range(data.draw(st.integers(1, 3)))]
    numpy.testing.assert_array_equal(
        tv.stack(parts, axis=axis).data, numpy.stack([p.data for p in parts], axis=axis)
    )
    assert tv.gradcheck(lambda *ts: tv.stack(list(ts), axis=axis), parts, name=f"stack({axis})")


@given(pair=broadcast_pairs(), data=st.data())
def test_broadcast_to_gradient_sums_the_copies(pair, data):
    """broadcast_to copies each x_i to several positions of y, so dL/dx_i is the sum of the incoming
    gradient over those copies (``sum_to_shape``)."""
    shape, target = pair
    x = data.draw(tensors(shape))
    numpy.testing.assert_array_equal(tv.broadcast_to(x, target).data, numpy.broadcast_to(x.data, target))
    assert tv.gradcheck(lambda t: tv.broadcast_to(t, target), [x], name=f"broadcast_to({target})")


def test_scalar_broadcast_gradient_counts_the_copies():
    """A scalar broadcast to shape (2, 3) appears 6 times, so with an all-ones upstream gradient its
    gradient is exactly 6."""
    x = leaf(1.5)
    tv.broadcast_to(x, (2, 3)).sum().backward()
    assert x.grad == 6.0


# ---------------------------------------------------------------- errors that teach


def test_linear_refuses_wrong_in_features():
    """linear names x's shape, the expected number of input features and W's shape."""
    x, W = leaf(numpy.zeros((2, 5))), leaf(numpy.zeros((4, 3)))
    with pytest.raises(
        ValueError,
        match=re.escape("linear: x has shape (2, 5) but W expects 4 input features (W.shape == (4, 3))"),
    ):
        ops.linear(x, W)


def test_linear_refuses_wrong_bias_shape():
    """linear names b's shape and the shape it must have."""
    with pytest.raises(ValueError, match=re.escape("linear: b has shape (4,) but W has 3 output features")):
        ops.linear(leaf(numpy.zeros((2, 4))), leaf(numpy.zeros((4, 3))), leaf(numpy.zeros(4)))


def test_matmul_refuses_misaligned_shapes():
    """matmul names both shapes and the two inner sizes that differ."""
    with pytest.raises(ValueError, match=re.escape("matmul: shapes (2, 3) and (4, 5) do not align")):
        leaf(numpy.zeros((2, 3))) @ leaf(numpy.zeros((4, 5)))


def test_concatenate_refuses_mismatched_shapes():
    """concatenate names the offending tensor, its shape, tensor 0's shape and the axis."""
    a, b = leaf(numpy.zeros((2, 3))), leaf(numpy.zeros((2, 4)))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "concatenate: tensor 1 has shape (2, 4), which does not match tensor 0's shape (2, 3)"
        ),
    ):
        tv.concatenate([a, b], axis=0)


def test_stack_refuses_unequal_shapes():
    """stack names the offending tensor's shape and tensor 0's shape."""
    with pytest.raises(
        ValueError, match=re.escape("stack: tensor 1 has shape (3,) but tensor 0 has shape (2,)")
    ):
        tv.stack([leaf(numpy.zeros(2)), leaf(numpy.zeros(3))])


def test_reshape_refuses_a_different_number_of_elements():
    """reshape names the input shape and the requested one."""
    with pytest.raises(ValueError, match=re.escape("reshape: cannot reshape shape (2, 3) into (4,)")):
        leaf(numpy.zeros((2, 3))).reshape(4)


def test_broadcast_to_refuses_incompatible_target():
    """broadcast_to names the input shape and the target."""
    with pytest.raises(ValueError, match=re.escape("broadcast_to: cannot broadcast shape (3,) to (2, 4)")):
        tv.broadcast_to(leaf(numpy.zeros(3)), (2, 4))


@given(values((2, 3)))
def test_transpose_refuses_a_non_permutation(x):
    """transpose names the axes it was given when they are not a permutation of the input's axes."""
    with pytest.raises(ValueError, match=r"transpose: axes \(0, 0\) are not a permutation of 2 axes"):
        leaf(x).transpose(0, 0)
