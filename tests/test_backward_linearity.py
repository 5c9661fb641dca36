"""Backpropagation is a linear map of the incoming gradient: for y = f(x), the vector-Jacobian product
g ↦ gᵀ (∂y/∂x) satisfies vjp(a g₁ + b g₂) = a vjp(g₁) + b vjp(g₂). A backward that, say, squared g or
added a constant would still pass a single gradcheck seeded with one g only by luck; this catches it.

Every op class in ``tinyvae.ops`` appears in at least one case below (a test checks that), each on fixed
float64 inputs already away from its kinks and singularities.
"""

import importlib
import inspect
import pkgutil

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyvae as tv
from tinyvae import ops
from tinyvae.autodiff import Function

RTOL, ATOL = 1e-12, 1e-12  # float64: the two sides differ only by rounding


def _inputs(*shapes, positive=False, seed=0):
    """Fresh float64 leaves; positive ones lie in [0.5, 2] (for log, sqrt, division, powers)."""
    rng = numpy.random.default_rng(seed)
    arrays = [rng.uniform(0.5, 2.0, s) if positive else rng.standard_normal(s) for s in shapes]
    return [tv.Tensor(a, requires_grad=True) for a in arrays]


_INDEX = numpy.array([2, 0, 2, 1])  # repeated index: the backward must scatter-add
_MASK = numpy.array([True, False, True])
_CODEBOOK = tv.Tensor(numpy.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 1.0]]), requires_grad=True)

# (case id, function of the leaves, shapes of the leaves, leaves positive?)
CASES = [
    ("add", ops.add, [(2, 3), (3,)], False),
    ("sub", ops.sub, [(2, 1), (1, 3)], False),
    ("mul", ops.mul, [(2, 3), (2, 3)], False),
    ("div", ops.div, [(2, 3), (3,)], True),
    ("power-tensor", ops.power, [(2, 3), (2, 3)], True),
    ("power-scalar", lambda x: x**2.5, [(2, 3)], True),
    ("neg", ops.neg, [(4,)], False),
    ("exp", ops.exp, [(2, 3)], False),
    ("log", ops.log, [(2, 3)], True),
    ("sqrt", ops.sqrt, [(2, 3)], True),
    ("relu", ops.relu, [(3, 4)], False),
    ("leaky_relu", lambda x: ops.leaky_relu(x, 0.1), [(3, 4)], False),
    ("tanh", ops.tanh, [(3, 4)], False),
    ("sigmoid", ops.sigmoid, [(3, 4)], False),
    ("softplus", ops.softplus, [(3, 4)], False),
    ("sum", lambda x: ops.sum(x, axis=1), [(3, 4)], False),
    ("mean", lambda x: ops.mean(x, axis=(0, 2), keepdims=True), [(2, 3, 4)], False),
    ("max", lambda x: ops.max(x, axis=0), [(3, 4)], False),
    ("logsumexp", lambda x: ops.logsumexp(x, axis=-1), [(3, 4)], False),
    ("log_softmax", lambda x: ops.log_softmax(x, axis=0), [(3, 4)], False),
    ("matmul", ops.matmul, [(2, 3, 4), (4, 2)], False),
    ("matmul-vector", ops.matmul, [(4,), (2, 4, 3)], False),
    ("linear", ops.linear, [(2, 3, 4), (4, 5), (5,)], False),
    ("reshape", lambda x: x.reshape(4, 3), [(2, 6)], False),
    ("transpose", lambda x: x.transpose(2, 0, 1), [(2, 3, 4)], False),
    ("getitem-repeated", lambda x: x[_INDEX], [(3, 2)], False),
    ("getitem-mask", lambda x: x[_MASK], [(3, 2)], False),
    ("getitem-slice", lambda x: x[1:, ::-1], [(3, 4)], False),
    ("concatenate", lambda a, b: tv.concatenate([a, b], axis=1), [(2, 3), (2, 1)], False),
    ("stack", lambda a, b: tv.stack([a, b], axis=-1), [(2, 3), (2, 3)], False),
    ("broadcast_to", lambda x: tv.broadcast_to(x, (2, 4, 3)), [(4, 1)], False),
    ("reparameterize", ops.reparameterize, [(2, 3), (2, 3), (5, 2, 3)], False),
    ("gaussian_kl", ops.gaussian_kl, [(2, 3), (2, 3)], False),
    ("gaussian_kl-prior", ops.gaussian_kl, [(2, 3), (1, 3), (3,), (2, 3)], False),
    ("gaussian_log_prob", ops.gaussian_log_prob, [(2, 3), (3,), (2, 3)], False),
    ("soft_clamp", lambda x: ops.soft_clamp(x, -1.0, 1.0), [(3, 4)], False),
    ("bernoulli_log_prob", ops.bernoulli_log_prob, [(2, 3), (2, 3)], False),
    ("vector_quantize", lambda z: ops.vector_quantize(z, _CODEBOOK)[0], [(4, 2)], False),
    ("embedding-repeated", lambda t: ops.embedding(t, _INDEX), [(3, 2)], False),
    ("layer_norm", ops.layer_norm, [(2, 3, 4), (4,), (4,)], False),
    ("causal_attention", ops.causal_attention, [(2, 3, 2), (2, 3, 2), (2, 3, 2)], False),
    (
        "conv2d",
        lambda x, W, b: ops.conv2d(x, W, b, stride=2, padding=1),
        [(2, 3, 5, 5), (4, 3, 3, 3), (4,)],
        False,
    ),
    (
        "conv_transpose2d",
        lambda x, W, b: ops.conv_transpose2d(x, W, b, stride=2, padding=1),
        [(2, 3, 3, 4), (3, 2, 4, 3), (2,)],
        False,
    ),
]


def _vjp(y, leaves, g):
    """The gradients of every leaf for the incoming gradient g (fresh .grad slots, graph kept)."""
    for leaf in leaves:
        leaf.grad = None
    y.backward(g, retain_graph=True)
    return [numpy.zeros(leaf.shape) if leaf.grad is None else leaf.grad.copy() for leaf in leaves]


@pytest.mark.parametrize(("fn", "shapes", "positive"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@given(a=st.floats(-3, 3), b=st.floats(-3, 3), seed=st.integers(0, 2**16))
def test_backward_is_linear_in_the_incoming_gradient(fn, shapes, positive, a, b, seed):
    """vjp(a·g₁ + b·g₂) = a·vjp(g₁) + b·vjp(g₂) for every input, to rounding (rtol = atol = 1e-12)."""
    leaves = _inputs(*shapes, positive=positive)
    y = fn(*leaves)
    rng = numpy.random.default_rng(seed)
    g1, g2 = rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    combined = _vjp(y, leaves, a * g1 + b * g2)
    separate = [a * u + b * v for u, v in zip(_vjp(y, leaves, g1), _vjp(y, leaves, g2), strict=True)]
    for got, expected in zip(combined, separate, strict=True):
        numpy.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def _op_classes_in_graph(y):
    """The Function classes recorded in the graph that produced ``y``."""
    seen, stack, found = set(), [y._ctx], set()
    while stack:
        ctx = stack.pop()
        if ctx is None or id(ctx) in seen:
            continue
        seen.add(id(ctx))
        found.add(ctx.function)
        stack.extend(getattr(t, "_ctx", None) for t in ctx.inputs)
    return found


def test_every_op_class_has_a_linearity_case():
    """Each Function subclass defined in tinyvae.ops is exercised by at least one case above, so a new
    op cannot slip past this check unnoticed."""
    defined = set()
    for module_info in pkgutil.iter_modules(ops.__path__):
        module = importlib.import_module(f"tinyvae.ops.{module_info.name}")
        defined |= {
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, Function) and cls.__module__ == module.__name__
        }
    assert len(defined) > 20  # the discovery itself works
    covered = set()
    for _, fn, shapes, positive in CASES:
        covered |= _op_classes_in_graph(fn(*_inputs(*shapes, positive=positive)))
    missing = sorted(cls.__name__ for cls in defined - covered)
    assert not missing, f"op classes with no linearity case: {missing}"
