"""Every elementwise op's hand-written backward agrees with central finite differences (``tv.gradcheck``,
float64), on shapes drawn by hypothesis: scalars, size-1 dims and every broadcasting pair.

Margins. gradcheck steps by h = 1e-6 · max(1, ‖x‖_∞) ≤ 1e-5 on these inputs, so an input kept 1e-3 from a
kink (relu, leaky_relu at 0) is never pushed across it, and inputs kept ≥ 0.1 from a singularity (log,
sqrt and 1/x at 0) keep the third derivative, and so the O(h²) truncation error, small.
"""

import math

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import broadcastable_shapes, leaf, shapes, tensors

import tinyvae as tv
from tinyvae import ops

KINK_MARGIN = 1e-3  # relu / leaky_relu inputs stay this far from 0
POSITIVE_LOW = 0.1  # log / sqrt inputs, divisors and tensor-exponent bases stay at least this far from 0


# ---------------------------------------------------------------- arithmetic with broadcasting


@pytest.mark.parametrize("op", [ops.add, ops.sub, ops.mul], ids=["add", "sub", "mul"])
@given(data=st.data())
def test_add_sub_mul_gradients_sum_over_broadcast_axes(op, data):
    """d(a ± b)/da = 1, d(a ± b)/db = ±1 and d(ab)/da = b, each summed over the axes along which that
    input was broadcast, for every broadcasting pair of shapes."""
    shape_a, shape_b = data.draw(broadcastable_shapes(2))
    a, b = data.draw(tensors(shape_a)), data.draw(tensors(shape_b))
    assert tv.gradcheck(op, [a, b])


@given(data=st.data())
def test_div_gradient_is_quotient_rule(data):
    """d(a/b)/da = 1/b and d(a/b)/db = −a/b², with |b| ≥ 0.1 so the quotient stays away from its pole."""
    shape_a, shape_b = data.draw(broadcastable_shapes(2))
    a = data.draw(tensors(shape_a))
    b = data.draw(tensors(shape_b, avoid=[0.0], margin=POSITIVE_LOW))
    assert tv.gradcheck(ops.div, [a, b])


@given(data=st.data())
def test_power_with_tensor_exponent(data):
    """d(a^b)/da = b a^(b−1) and d(a^b)/db = a^b log a, for bases a ≥ 0.1 (log a is defined) and
    broadcast shapes."""
    shape_a, shape_b = data.draw(broadcastable_shapes(2))
    a = data.draw(tensors(shape_a, low=POSITIVE_LOW, high=3.0))
    b = data.draw(tensors(shape_b, low=-2.0, high=2.0))
    assert tv.gradcheck(ops.power, [a, b])


@pytest.mark.parametrize("exponent", [2, 3, -1, 0.5, -1.5])
@given(data=st.data())
def test_power_with_scalar_exponent(exponent, data):
    """d(x^p)/dx = p x^(p−1) for a Python-number exponent p: any sign of x for p = 2, 3; |x| ≥ 0.1 for
    p = −1; x ≥ 0.1 for the fractional powers, where x^p is real only for x > 0."""
    shape = data.draw(shapes)
    if exponent in (2, 3):
        x = data.draw(tensors(shape))
    elif exponent == -1:
        x = data.draw(tensors(shape, avoid=[0.0], margin=POSITIVE_LOW))
    else:
        x = data.draw(tensors(shape, low=POSITIVE_LOW, high=3.0))
    assert tv.gradcheck(lambda t: t**exponent, [x], name=f"x ** {exponent}")


@given(x=shapes.flatmap(lambda shape: tensors(shape, low=-2.0, high=2.0)))
def test_scalar_base_power(x):
    """d(2^x)/dx = 2^x log 2: a Python-number base, the tensor in the exponent (``__rpow__``)."""
    assert tv.gradcheck(lambda t: 2.0**t, [x], name="2 ** x")


@pytest.mark.parametrize(
    "fn",
    [lambda t: t + 2.0, lambda t: 2.0 - t, lambda t: t * -3.0, lambda t: 1.5 / t, lambda t: t / 4.0],
    ids=["x+2", "2-x", "x*-3", "1.5/x", "x/4"],
)
@given(data=st.data())
def test_arithmetic_with_python_numbers(fn, data):
    """A Python number is a constant: x + c, c − x, c·x, c/x, x/c have derivatives 1, −1, c, −c/x², 1/c
    (|x| ≥ 0.1 keeps c/x off its pole)."""
    x = data.draw(shapes.flatmap(lambda shape: tensors(shape, avoid=[0.0], margin=POSITIVE_LOW)))
    assert tv.gradcheck(fn, [x])


@given(x=shapes.flatmap(tensors))
def test_neg_gradient_is_minus_one(x):
    """d(−x)/dx = −1, through both ``ops.neg`` and the unary minus operator."""
    assert tv.gradcheck(ops.neg, [x])
    assert tv.gradcheck(lambda t: -t, [x], name="-x")


# ---------------------------------------------------------------- exp, log, sqrt


@given(x=shapes.flatmap(tensors))
def test_exp_gradient_is_exp(x):
    """d e^x/dx = e^x."""
    assert tv.gradcheck(ops.exp, [x])


@given(x=shapes.flatmap(lambda shape: tensors(shape, low=POSITIVE_LOW, high=5.0)))
def test_log_gradient_is_reciprocal(x):
    """d log x/dx = 1/x, for x ≥ 0.1 (log is singular at 0)."""
    assert tv.gradcheck(ops.log, [x])


@given(x=shapes.flatmap(lambda shape: tensors(shape, low=POSITIVE_LOW, high=5.0)))
def test_sqrt_gradient_is_half_reciprocal_sqrt(x):
    """d √x/dx = 1 / (2√x), for x ≥ 0.1 (the derivative blows up at 0)."""
    assert tv.gradcheck(ops.sqrt, [x])


def test_exp_log_sqrt_forward_match_numpy():
    """exp, log and sqrt compute NumPy's values (the gradient tests assume the forward is right)."""
    x = numpy.linspace(0.1, 5.0, 12).reshape(3, 4)
    numpy.testing.assert_allclose(ops.exp(leaf(x)).data, numpy.exp(x), rtol=1e-15)
    numpy.testing.assert_allclose(ops.log(leaf(x)).data, numpy.log(x), rtol=1e-15)
    numpy.testing.assert_allclose(ops.sqrt(leaf(x)).data, numpy.sqrt(x), rtol=1e-15)


# ---------------------------------------------------------------- activations


@given(x=shapes.flatmap(lambda shape: tensors(shape, avoid=[0.0], margin=KINK_MARGIN)))
def test_relu_gradient_is_step_away_from_zero(x):
    """d relu(x)/dx = 1 for x > 0 and 0 for x < 0, with every input at least 1e-3 from the kink at 0
    (the finite-difference step is at most 3e-6 here, so it never crosses it)."""
    assert tv.gradcheck(ops.relu, [x])


def test_relu_gradient_at_the_kink_is_zero():
    """At x = 0 relu has no derivative; tinyvae takes the subgradient 0 (as documented in ``ReLU``)."""
    x = leaf([-1.0, 0.0, 2.0])
    ops.relu(x).sum().backward()
    numpy.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


@given(
    x=shapes.flatmap(lambda shape: tensors(shape, avoid=[0.0], margin=KINK_MARGIN)),
    slope=st.floats(0.0, 2.0),
)
def test_leaky_relu_gradient_is_one_or_slope(x, slope):
    """d leaky_relu(x)/dx = 1 for x > 0 and ``negative_slope`` for x < 0, inputs 1e-3 from the kink."""
    assert tv.gradcheck(lambda t: ops.leaky_relu(t, slope), [x], name=f"leaky_relu(slope={slope})")
    numpy.testing.assert_allclose(
        ops.leaky_relu(x, slope).data, numpy.where(x.data > 0, x.data, slope * x.data), rtol=1e-15
    )


@pytest.mark.parametrize(
    ("op", "reference"),
    [
        (ops.tanh, numpy.tanh),
        (ops.sigmoid, lambda x: 1 / (1 + numpy.exp(-x))),
        (ops.softplus, lambda x: numpy.log1p(numpy.exp(x))),
    ],
    ids=["tanh", "sigmoid", "softplus"],
)
@given(x=shapes.flatmap(lambda shape: tensors(shape, low=-10.0, high=10.0)))
def test_smooth_activations(op, reference, x):
    """tanh' = 1 − tanh², σ' = σ(1 − σ), softplus' = σ, on |x| ≤ 10; the forwards match the textbook
    formulas (which are safe to evaluate at this range)."""
    assert tv.gradcheck(op, [x])
    numpy.testing.assert_allclose(op(x).data, reference(x.data), rtol=1e-13, atol=1e-15)


def test_sigmoid_and_softplus_are_finite_and_exact_at_plus_minus_100():
    """At x = ±100, where e^x overflows float32 and e^−x underflows, σ and softplus and their gradients
    are finite and equal the exact values: σ(100) = 1/(1 + e^−100), σ(−100) = e^−100/(1 + e^−100),
    softplus(100) = 100 + log1p(e^−100), softplus(−100) = log1p(e^−100)."""
    tiny = math.exp(-100)
    x = leaf([100.0, -100.0])
    exact_sigmoid = numpy.array([1 / (1 + tiny), tiny / (1 + tiny)])
    exact_softplus = numpy.array([100 + math.log1p(tiny), math.log1p(tiny)])

    y = ops.sigmoid(x)
    numpy.testing.assert_allclose(y.data, exact_sigmoid, rtol=1e-14)
    y.sum().backward()
    numpy.testing.assert_allclose(x.grad, exact_sigmoid * (1 - exact_sigmoid), rtol=1e-12, atol=1e-300)
    assert numpy.all(numpy.isfinite(x.grad))

    x.zero_grad()
    y = ops.softplus(x)
    numpy.testing.assert_allclose(y.data, exact_softplus, rtol=1e-14)
    y.sum().backward()
    numpy.testing.assert_allclose(x.grad, exact_sigmoid, rtol=1e-14)
    assert tv.gradcheck(ops.softplus, [leaf([100.0, -100.0])])


@given(
    x=st.lists(st.floats(-120.0, 120.0, width=32), min_size=1, max_size=64).map(
        lambda values: numpy.array(values, dtype=numpy.float32)
    )
)
def test_stable_sigmoid_float32_is_within_a_few_ulp_of_the_exact_value(x):
    """The two-branch form of σ (tinyvae/ops/elementwise.py) in float32, random signs, |x| ≤ 120: every
    value within 3 float32 ulp (relative 3·2⁻²³) of σ computed in float64 and rounded, for both branches,
    including σ(x) for x < −88 where σ is subnormal (there the absolute error is below the smallest ulp)."""
    from tinyvae.ops.elementwise import stable_sigmoid

    x64 = x.astype(numpy.float64)
    exact = numpy.where(x64 >= 0, 1 / (1 + numpy.exp(-numpy.abs(x64))), numpy.exp(x64) / (1 + numpy.exp(x64)))
    got = stable_sigmoid(x)
    assert got.dtype == numpy.float32
    numpy.testing.assert_allclose(got, exact, rtol=3 * 2.0**-23, atol=2 * 2.0**-149)


def test_stable_sigmoid_of_a_0d_array_and_the_special_values():
    from tinyvae.ops.elementwise import stable_sigmoid

    assert float(stable_sigmoid(numpy.array(0.0, dtype=numpy.float32))) == 0.5
    special = numpy.array([-numpy.inf, numpy.inf, numpy.nan], dtype=numpy.float32)
    with numpy.errstate(invalid="ignore"):
        got = stable_sigmoid(special)
    assert got[0] == 0.0 and got[1] == 1.0 and numpy.isnan(got[2])
