"""The transformer ops (``tinyvae/ops/attention.py``): ``embedding``, ``layer_norm`` and ``causal_attention``.

Each backward is checked against central finite differences (``tv.gradcheck``, float64, its default
rtol = 1e-5 and atol = 1e-8 plus its rounding allowance: the three ops are smooth where they are tested, so
the difference quotient with h ≈ 1e-6·max|x| is accurate to far better than 1e-5 of the gradient), over
shapes drawn by hypothesis: sequence length L = 1 included, zero to two leading batch dims, repeated indices
for the embedding. Each forward is compared with a plain NumPy reference at rtol = 1e-12 (both are float64
evaluations of the same formula in a different order, so they differ by rounding, ~1e-15).

Margins. layer_norm is smooth everywhere (ε = 1e-5 keeps σ ≥ √ε > 0), but a near-constant row makes it
steep (its gradient scales as 1/σ, up to 316 at a constant row): rows are therefore spread to a standard
deviation of at least 0.1 (variance ≥ 0.01 = 1000 ε) before an overall scale of 1 or 1e3 is applied; the
step of gradcheck scales with max|x|, so it stays ~3e-5 of σ in both cases. causal_attention's softmax is
smooth; scores stay below ~16 in magnitude for entries in [−3, 3]. The embedding is linear in its table.
"""

import math

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import leaf, values

import tinyvae as tv
from tinyvae import ops
from tinyvae.gradcheck import GradcheckError
from tinyvae.ops.attention import CausalAttention

EPS = 1e-5  # layer_norm's default ε
MIN_ROW_STD = 0.1  # layer_norm inputs: each row's standard deviation at least this (variance 1000 ε)

batch_dims = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)


# ---------------------------------------------------------------- references in plain NumPy


def reference_attention(q, k, v):
    """out_i = Σ_{j ≤ i} w_ij v_j with w_i = softmax_j(q_i · k_j / √d) over j ≤ i, one row at a time."""
    out = numpy.zeros_like(q)
    length, d = q.shape[-2:]
    for index in numpy.ndindex(q.shape[:-2]):
        for i in range(length):
            scores = numpy.array([q[index][i] @ k[index][j] / math.sqrt(d) for j in range(i + 1)])
            w = numpy.exp(scores - scores.max())
            w /= w.sum()
            out[index][i] = sum(w[j] * v[index][j] for j in range(i + 1))
    return out


def reference_layer_norm(x, gain, bias, eps=EPS):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return gain * (x - mean) / numpy.sqrt(var + eps) + bias


def spread_rows(x, min_std=MIN_ROW_STD):
    """Add a ramp from −1 to 1 to every row of x whose standard deviation is below ``min_std``: the ramp's
    own standard deviation is at least 0.58 (for D ≥ 2), so such a row ends above 0.58 − 0.1 > min_std."""
    if x.shape[-1] < 2:
        return x  # a single feature: x̂ = 0 and y = bias whatever x is; nothing to spread
    ramp = numpy.linspace(-1.0, 1.0, x.shape[-1])
    flat = x.std(axis=-1, keepdims=True) < min_std
    return x + flat * ramp


# ---------------------------------------------------------------- embedding


@st.composite
def embedding_cases(draw):
    """(table (V, D), indices of a drawn shape with values in [0, V)): repeats are common (V ≤ 4)."""
    vocabulary, features = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    table = leaf(draw(values((vocabulary, features))))
    index_shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    indices = draw(hnp.arrays(numpy.int64, index_shape, elements=st.integers(0, vocabulary - 1)))
    return table, indices


@given(case=embedding_cases())
def test_embedding_forward_and_gradient(case):
    """y = table[indices] exactly; dL/dtable[v] sums g over every position that reads row v."""
    table, indices = case
    y = ops.embedding(table, indices)
    assert y.shape == indices.shape + (table.shape[1],)
    numpy.testing.assert_array_equal(y.data, table.data[indices])
    assert tv.gradcheck(lambda t: ops.embedding(t, indices), [table], name="embedding")


def test_embedding_repeated_index_gets_every_gradient():
    """Row 2 is read three times: its gradient is the sum of the three incoming rows (exactly); row 1 is
    never read and gets 0."""
    table = leaf(numpy.arange(8.0).reshape(4, 2))
    indices = numpy.array([[2, 0], [2, 2]])
    g = numpy.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])
    ops.embedding(table, indices).backward(g)
    numpy.testing.assert_array_equal(table.grad, [[3.0, 4.0], [0.0, 0.0], [13.0, 16.0], [0.0, 0.0]])


# ---------------------------------------------------------------- layer norm


@st.composite
def layer_norm_cases(draw):
    """(x, gain, bias): x (..., D) with rows spread (see the module docstring), times 1 or 1e3."""
    features = draw(st.integers(1, 4))
    shape = draw(batch_dims) + (features,)
    scale = draw(st.sampled_from([1.0, 1e3]))
    x = leaf(scale * spread_rows(draw(values(shape))))
    gain, bias = leaf(draw(values((features,)))), leaf(draw(values((features,))))
    return x, gain, bias


@given(case=layer_norm_cases())
def test_layer_norm_forward_and_gradients(case):
    """The forward equals gain·(x − mean)/sqrt(var + ε) + bias computed by NumPy; the backward
    (1/σ)(ĝ − mean ĝ − x̂ mean(ĝ x̂)), Σ g x̂ and Σ g match finite differences for x, gain and bias."""
    x, gain, bias = case
    expected = reference_layer_norm(x.data, gain.data, bias.data)
    numpy.testing.assert_allclose(ops.layer_norm(x, gain, bias).data, expected, rtol=1e-12, atol=1e-12)
    assert tv.gradcheck(ops.layer_norm, [x, gain, bias], name="layer_norm")


def test_layer_norm_rows_have_zero_mean_and_unit_variance():
    """With gain 1 and bias 0 every row comes out with mean 0 and variance var/(var + ε) (≈ 1)."""
    x = numpy.random.default_rng(0).normal(3.0, 2.0, (5, 16))
    y = ops.layer_norm(tv.Tensor(x), tv.Tensor(numpy.ones(16)), tv.Tensor(numpy.zeros(16))).data
    numpy.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-14)
    var = x.var(axis=-1)
    numpy.testing.assert_allclose(y.var(axis=-1), var / (var + EPS), rtol=1e-12)


# ---------------------------------------------------------------- causal attention


@st.composite
def attention_inputs(draw):
    """q, k, v of one shape (..., L, d): L from 1 to 4, d from 1 to 3, zero to two leading dims."""
    shape = draw(batch_dims) + (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    return tuple(leaf(draw(values(shape))) for _ in range(3))


@given(qkv=attention_inputs())
def test_causal_attention_forward_matches_a_masked_softmax_loop(qkv):
    q, k, v = qkv
    out = ops.causal_attention(q, k, v)
    assert out.shape == q.shape
    numpy.testing.assert_allclose(
        out.data, reference_attention(q.data, k.data, v.data), rtol=1e-12, atol=1e-13
    )


@given(qkv=attention_inputs())
def test_causal_attention_gradients(qkv):
    """dV = Aᵀ G, dQ = dS K/√d, dK = dSᵀ Q/√d with dS the softmax Jacobian applied to G Vᵀ."""
    assert tv.gradcheck(ops.causal_attention, list(qkv), name="causal_attention")


@given(qkv=attention_inputs(), data=st.data())
def test_causal_attention_never_looks_ahead(qkv, data):
    """Changing the keys and values at positions ≥ j leaves the outputs at positions < j unchanged bit for
    bit (the masked weights are exactly 0), and no gradient from those outputs reaches them (exactly 0)."""
    q, k, v = qkv
    length = q.shape[-2]
    j = data.draw(st.integers(1, length))  # j = L changes nothing: the check then holds trivially
    before = ops.causal_attention(q, k, v).data
    k2, v2 = k.data.copy(), v.data.copy()
    k2[..., j:, :] = data.draw(values(k2[..., j:, :].shape, low=-50.0, high=50.0))
    v2[..., j:, :] = data.draw(values(v2[..., j:, :].shape, low=-50.0, high=50.0))
    after = ops.causal_attention(q, tv.Tensor(k2), tv.Tensor(v2)).data
    numpy.testing.assert_array_equal(after[..., :j, :], before[..., :j, :])

    g = numpy.zeros(q.shape)
    g[..., :j, :] = 1.0  # a loss that reads only the outputs before j
    ops.causal_attention(q, k, v).backward(g)
    assert not numpy.any(k.grad[..., j:, :]) and not numpy.any(v.grad[..., j:, :])


def test_causal_attention_first_position_copies_its_value():
    """Position 1 can attend only to itself: its weight is 1 and out_1 = v_1, whatever q and k are."""
    rng = numpy.random.default_rng(0)
    q, k, v = (tv.Tensor(rng.standard_normal((2, 5, 3))) for _ in range(3))
    numpy.testing.assert_array_equal(ops.causal_attention(q, k, v).data[:, 0], v.data[:, 0])


def test_causal_attention_is_stable_for_large_scores():
    """Scores of ±1e4 would overflow exp without the row-max shift; the output stays finite and equal to
    the reference (which shifts too)."""
    rng = numpy.random.default_rng(1)
    q, k, v = (rng.standard_normal((4, 2)) for _ in range(3))
    q *= 100.0
    k *= 100.0
    out = ops.causal_attention(tv.Tensor(q), tv.Tensor(k), tv.Tensor(v)).data
    assert numpy.all(numpy.isfinite(out))
    numpy.testing.assert_allclose(out, reference_attention(q, k, v), rtol=1e-12, atol=1e-13)


def test_gradcheck_catches_a_wrong_attention_backward(monkeypatch):
    """A backward that forgets the softmax Jacobian's row-sum term (dS = A ⊙ dA, a plausible slip) is
    caught: the check can fail. The correct backward passes on the same inputs."""
    rng = numpy.random.default_rng(2)
    qkv = [leaf(rng.standard_normal((2, 3, 2))) for _ in range(3)]
    assert tv.gradcheck(ops.causal_attention, qkv)

    def wrong_backward(ctx, g):
        q, k, v, weights = ctx.saved
        swap = lambda a: numpy.swapaxes(a, -1, -2)  # noqa: E731
        grad_scores = weights * (g @ swap(v))  # missing: − rowsum(dA ⊙ A)
        return grad_scores @ k * ctx.scale, swap(grad_scores) @ q * ctx.scale, swap(weights) @ g

    monkeypatch.setattr(CausalAttention, "backward", staticmethod(wrong_backward))
    with pytest.raises(GradcheckError, match="causal_attention"):
        tv.gradcheck(ops.causal_attention, qkv, name="causal_attention")


# ---------------------------------------------------------------- errors name the argument


def _t(*shape):
    return tv.Tensor(numpy.zeros(shape))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ops.embedding(_t(4, 2), numpy.array([0.0, 1.0])), TypeError, r"indices .* dtype float64"),
        (
            lambda: ops.embedding(_t(4, 2), numpy.array([0, 4])),
            ValueError,
            r"from 0 to 4 .* V = 4 .*\[0, 4\)",
        ),
        (lambda: ops.embedding(_t(4, 2), numpy.array([-1, 2])), ValueError, r"from -1 to 2"),
        (
            lambda: ops.embedding(_t(4, 2), _t(3)),
            TypeError,
            r"indices must be an integer array, got a Tensor",
        ),
        (lambda: ops.embedding(_t(4), numpy.array([0])), ValueError, r"table must be 2-D .* \(4,\)"),
        (lambda: ops.embedding(numpy.zeros((4, 2)), numpy.array([0])), TypeError, r"table must be a Tensor"),
        (lambda: ops.layer_norm(_t(2, 3), _t(4), _t(3)), ValueError, r"gain has shape \(4,\) .* \(2, 3\)"),
        (lambda: ops.layer_norm(_t(2, 3), _t(3), _t(3, 1)), ValueError, r"bias has shape \(3, 1\)"),
        (lambda: ops.layer_norm(_t(), _t(1), _t(1)), ValueError, r"x must have at least one axis"),
        (lambda: ops.layer_norm(_t(2, 3), _t(3), _t(3), eps=0.0), ValueError, r"eps must be a positive"),
        (lambda: ops.causal_attention(_t(2, 3, 4), _t(2, 3, 5), _t(2, 3, 4)), ValueError, r"k has shape"),
        (lambda: ops.causal_attention(_t(2, 3, 4), _t(2, 3, 4), _t(2, 2, 4)), ValueError, r"v has shape"),
        (lambda: ops.causal_attention(_t(4), _t(4), _t(4)), ValueError, r"q must have at least two axes"),
        (lambda: ops.causal_attention(_t(0, 2), _t(0, 2), _t(0, 2)), ValueError, r"L and the size d"),
        (lambda: ops.causal_attention(numpy.zeros((2, 2)), _t(2, 2), _t(2, 2)), TypeError, r"q must be a"),
    ],
)
def test_errors_name_the_argument_and_shapes(call, error, message):
    with pytest.raises(error, match=message):
        call()
