"""The engine itself: the Tensor API, the backward walk, accumulation, graph checks, dtype rules, and the
gradient checker (including proof that it can fail)."""

import numpy
import pytest

import tinyvae as tv
import tinyvae.functional as F
from tinyvae.autodiff import Function, check_broadcastable


def leaf(values, dtype=numpy.float64):
    return tv.Tensor(numpy.array(values, dtype=dtype), requires_grad=True)


# ---------------------------------------------------------------- the Tensor


def test_tensor_attributes_before_and_after_backward():
    """A leaf has no gradient until a backward pass reaches it; then .grad has the leaf's shape."""
    x = leaf([[1.0, 2.0, 3.0]])
    assert x.grad is None and x.requires_grad and x.shape == (1, 3) and x.dtype == numpy.float64
    (x * 3.0).sum().backward()
    numpy.testing.assert_array_equal(x.grad, [[3.0, 3.0, 3.0]])


def test_python_data_defaults_to_float32():
    """Python numbers and lists become float32, the training default."""
    assert tv.Tensor(1.5).dtype == numpy.float32
    assert tv.Tensor([[1, 2], [3, 4]]).dtype == numpy.float32


def test_float_arrays_keep_their_dtype_and_share_memory():
    """A float64 array stays float64 (the dtype of checks), and is wrapped without a copy."""
    array = numpy.zeros(3)
    t = tv.Tensor(array)
    assert t.dtype == numpy.float64
    array[0] = 7.0
    assert t.data[0] == 7.0


@pytest.mark.parametrize("bad", [numpy.arange(3), numpy.array([True, False]), numpy.array([1j])])
def test_non_float_arrays_are_refused_with_a_clear_message(bad):
    """Integer, boolean and complex arrays are refused, and the message says how to convert."""
    with pytest.raises(TypeError, match=rf"dtype {bad.dtype}.*float32 or float64"):
        tv.Tensor(bad)
    assert tv.Tensor(bad.real if bad.dtype.kind == "c" else bad, dtype=numpy.float32).dtype == numpy.float32


def test_dtype_mixing_rule():
    """float32 op float64 computes in float64; a Python number keeps the tensor's dtype; each input's
    gradient has the input's own dtype."""
    a = leaf([1.0, 2.0], numpy.float32)
    b = leaf([3.0, 4.0], numpy.float64)
    assert (a * 2.0).dtype == numpy.float32
    y = a * b
    assert y.dtype == numpy.float64
    y.sum().backward()
    assert a.grad.dtype == numpy.float32 and b.grad.dtype == numpy.float64
    numpy.testing.assert_allclose(a.grad, [3.0, 4.0])


def test_detach_cuts_the_graph():
    """d/dx of x·detach(x) is detach(x) alone: no gradient flows through the detached factor."""
    x = leaf([2.0, -1.0])
    (x * x.detach()).sum().backward()
    numpy.testing.assert_array_equal(x.grad, [2.0, -1.0])
    assert not x.detach().requires_grad


def test_no_grad_records_nothing():
    """Inside no_grad() results do not require grad, so backward() through them is an error."""
    x = leaf([1.0])
    with tv.no_grad():
        y = x * 2.0
        assert not tv.is_grad_enabled()
    assert tv.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    with pytest.raises(tv.GraphError, match="does not require grad"):
        y.backward()


# ---------------------------------------------------------------- accumulation


def test_x_times_x_gives_2x():
    """Both edges from x to x·x carry a gradient, and they add: d(x²)/dx = 2x."""
    x = leaf([3.0, -0.5])
    (x * x).sum().backward()
    numpy.testing.assert_array_equal(x.grad, [6.0, -1.0])


def test_reused_subexpression_accumulates():
    """With u = x·x used twice in y = u + 3u, dy/dx = 4 · 2x: every path's contribution is summed."""
    x = leaf([1.5])
    u = x * x
    (u + 3.0 * u).sum().backward()
    numpy.testing.assert_allclose(x.grad, [8 * 1.5])


def test_gradients_accumulate_across_backward_calls_until_zeroed():
    """Two backward passes add their gradients into .grad; zero_grad() resets it to None."""
    x = leaf([2.0])
    (x * x).sum().backward()
    (x * x * x).sum().backward()
    numpy.testing.assert_allclose(x.grad, [2 * 2.0 + 3 * 2.0**2])
    x.zero_grad()
    assert x.grad is None


def test_second_backward_through_a_freed_graph_is_an_error():
    """The saved arrays are freed after backward, so backpropagating twice through one graph fails loudly
    (naming the op) instead of silently doubling; retain_graph=True keeps them and the second pass adds."""
    x = leaf([2.0])
    y = (x.exp() * 3.0).sum()
    y.backward()
    with pytest.raises(tv.GraphError, match="already backpropagated"):
        y.backward()

    x.zero_grad()
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    numpy.testing.assert_allclose(x.grad, [2 * 4.0])


def test_leaf_gradients_never_alias():
    """a + b sends one array to both inputs; each leaf must own its .grad, so an in-place change to one
    does not change the other."""
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (a + b).backward(numpy.array([1.0, 1.0]))
    a.grad *= 0
    numpy.testing.assert_array_equal(b.grad, [1.0, 1.0])


def test_backward_on_a_leaf():
    """A leaf is its own output: its gradient is the seed."""
    x = leaf([1.0, 2.0])
    x.backward(numpy.array([5.0, 6.0]))
    numpy.testing.assert_array_equal(x.grad, [5.0, 6.0])


# ---------------------------------------------------------------- graph checks


def test_deep_graph_of_10000_ops():
    """The walk is iterative: a chain 10,000 ops deep backpropagates (d/dx of x·c^n is c^n)."""
    x = leaf([1.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    numpy.testing.assert_allclose(x.grad, [1.0001**10_000], rtol=1e-9)


def test_wide_diamond_graph_visits_each_node_once():
    """A node reached along many paths runs its backward once with the summed gradient: y = Σ_i (x + i)
    over 2,000 branches gives dy/dx = 2,000."""
    x = leaf([0.0])
    h = x * 1.0
    y = sum((h + float(i) for i in range(2000)), start=tv.Tensor(numpy.zeros(1)))
    y.sum().backward()
    numpy.testing.assert_allclose(x.grad, [2000.0])


def test_nonscalar_backward_needs_a_gradient():
    """For a non-scalar output dL/d(output) is not implied, so backward() without grad is an error."""
    y = leaf([1.0, 2.0]) * 2.0
    with pytest.raises(tv.GraphError, match=r"shape \(2,\); pass grad="):
        y.backward()
    with pytest.raises(tv.GraphError, match=r"grad has shape \(3,\)"):
        y.backward(numpy.ones(3))


class WrongShapeBackward(Function):
    """y = x with a broken backward that returns a gradient of the wrong shape."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return g.sum(axis=0)


def test_gradient_shape_mismatch_names_the_op():
    """Every edge checks that a gradient has its input's shape, and the error names the op."""
    y = WrongShapeBackward.apply(leaf([[1.0, 2.0], [3.0, 4.0]]))
    with pytest.raises(tv.GraphError, match=r"op 'WrongShapeBackward'.*shape \(2,\).*shape \(2, 2\)"):
        y.sum().backward()


# ---------------------------------------------------------------- gradcheck


class WrongExp(Function):
    """exp with a deliberately wrong backward (missing nothing but a factor of 1.01)."""

    @staticmethod
    def forward(ctx, x):
        y = numpy.exp(x)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return 1.01 * g * y


def test_gradcheck_fails_on_a_wrong_backward():
    """A gradient off by 1% is caught, and the message names the op, the input and the element."""
    x = leaf([0.1, 0.2, 0.3])
    with pytest.raises(tv.GradcheckError, match=r"gradcheck\(WrongExp\): input 0, element \(\d,\)"):
        tv.gradcheck(WrongExp.apply, [x], name="WrongExp")
    assert tv.gradcheck(F.exp, [x])


def test_gradcheck_fails_on_a_dropped_broadcast_sum():
    """A backward that forgets to undo broadcasting is caught (here by the shape check)."""

    class AddNoUnbroadcast(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g, g

    a, b = leaf([[1.0, 2.0], [3.0, 4.0]]), leaf([1.0, 2.0])
    with pytest.raises((tv.GradcheckError, tv.GraphError)):
        tv.gradcheck(AddNoUnbroadcast.apply, [a, b])


def test_gradcheck_refuses_float32():
    """float32 rounding swamps a finite difference, so gradcheck refuses float32 inputs and says why."""
    x = leaf([1.0], numpy.float32)
    with pytest.raises(TypeError, match="float64"):
        tv.gradcheck(F.exp, [x])


def test_gradcheck_leaves_existing_gradients_alone():
    """gradcheck works in fresh .grad slots and restores what the inputs held before."""
    x = leaf([1.0, 2.0])
    x.grad = numpy.array([7.0, 7.0])
    tv.gradcheck(F.tanh, [x])
    numpy.testing.assert_array_equal(x.grad, [7.0, 7.0])


class WrongSquare(Function):
    """y = x² with a backward 1% too large."""

    @staticmethod
    def forward(ctx, x):
        ctx.save(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return 1.01 * 2 * x * g


def test_gradcheck_scales_its_step_to_large_inputs():
    """At |x| ≈ 1e12 (one ulp ≈ 1.2e-4) a fixed step of 1e-6 rounds away (x + h == x), the difference
    carries no information and its rounding allowance swamps any error, so a 1% wrong backward slips
    through; with the step scaled to 1e-6 · ‖x‖∞ the same wrong backward is caught."""
    x = leaf([1.0e12, -2.0e12, 3.0e12])
    with pytest.raises(tv.GradcheckError, match="WrongSquare"):
        tv.gradcheck(WrongSquare.apply, [x], name="WrongSquare")
    assert tv.gradcheck(WrongSquare.apply, [x], step=1e-6 / 3.0e12)  # h = 1e-6: blind at this magnitude
    assert tv.gradcheck(lambda x: x * x, [x])


def test_sum_to_shape_undoes_broadcasting():
    """sum_to_shape sums over the axes broadcasting added or stretched, and leaves others alone."""
    g = numpy.arange(24.0).reshape(2, 3, 4)
    numpy.testing.assert_array_equal(tv.sum_to_shape(g, (3, 1)), g.sum(axis=(0, 2)).reshape(3, 1))
    numpy.testing.assert_array_equal(tv.sum_to_shape(g, ()), g.sum())
    assert tv.sum_to_shape(g, (2, 3, 4)) is g


def test_check_broadcastable_passes_what_numpy_broadcasts_and_names_a_clash():
    """The one broadcast check: silent when NumPy would broadcast, else the op, every shape and the axis."""
    for shapes in [((128, 20), (20,)), ((4, 1), (2, 1, 3)), ((), (5,)), ((2, 1), (1, 3), (3,))]:
        numpy.broadcast_shapes(*shapes)  # NumPy agrees
        assert check_broadcastable("op", *shapes) is None
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(2, 4\) do not broadcast: axis -1"):
        check_broadcastable("add", (2, 3), (2, 4))
    # Three shapes that each fit the first but not each other (2 vs 3 on the last axis).
    with pytest.raises(ValueError, match=r"shapes mu \(1,\) and logvar \(2,\) and eps \(3,\)"):
        check_broadcastable("reparameterize", (1,), (2,), (3,), names=["mu", "logvar", "eps"])


def test_an_op_on_plain_arrays_returns_a_tensor():
    """Function.apply wraps its output in the Tensor class that tensor.py handed to the engine."""

    class Double(Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

    y = Double.apply(numpy.ones(3))
    assert type(y) is tv.Tensor and not y.requires_grad
    numpy.testing.assert_array_equal(y.data, [2.0, 2.0, 2.0])
