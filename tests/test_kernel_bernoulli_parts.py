"""The Bernoulli log-probability's fast path (kernels/bernoulli_parts.py): every version equals the op's
textbook formulas (x l − softplus(l), and (x − σ(l)) g with the op's two-branch σ) and the NumPy reference,
on the layouts the op produces and on the ones the numba version hands back to NumPy; the op routes
through it."""

import numpy as np
import pytest
from backends import (
    BACKENDS,
    require_backend,
    run_under_each_cpu_backend,
    to_backend_arrays,
    to_numpy,
    versions_called,
)
from hypothesis import given
from hypothesis import strategies as st
from tinyvae.kernels import bernoulli_parts as parts

import tinyvae as tv
import tinyvae.functional as F
from tinyvae.ops.elementwise import stable_sigmoid

# One pass against a few ufuncs: the same operations, rounded once more or less (a fused multiply-add in
# the compiled loop), so a few float32/float64 ulps of the result's magnitude.
RTOL = {np.float32: 2e-6, np.float64: 1e-14}

leading_shapes = st.lists(st.integers(0, 4), min_size=0, max_size=2).map(tuple)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(
    leading=leading_shapes,
    repeats=st.integers(1, 3),
    features=st.integers(1, 30),
    scale=st.sampled_from([1.0, 10.0, 100.0]),
    g_kind=st.sampled_from(["full", "per row", "scalar", "transposed"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_version_matches_the_reference(backend, dtype, leading, repeats, features, scale, g_kind, seed):
    """Logits (repeats, *leading, D) with x (*leading, D) repeating along the first axis (IWAE's k samples
    of one batch), magnitudes up to 100 (where e underflows to 0 in float32 and σ is 0 or 1 exactly), and
    an incoming gradient that is full, constant along the features (a sum's backward: a stride-0 view),
    one broadcast scalar (a mean's backward), or non-contiguous."""
    require_backend(backend)
    rng = np.random.default_rng(seed)
    shape = (repeats, *leading, features)
    logits = (scale * rng.standard_normal(shape)).astype(dtype)
    x = rng.uniform(size=shape[1:]).astype(dtype)
    e = np.exp(-np.abs(logits))
    log1p_e = np.log1p(e)
    g = {
        "full": rng.standard_normal(shape).astype(dtype),
        "per row": np.broadcast_to(rng.standard_normal((*shape[:-1], 1)).astype(dtype), shape),
        "scalar": np.broadcast_to(dtype(rng.standard_normal()), shape),
        "transposed": np.asfortranarray(rng.standard_normal(shape).astype(dtype)),
    }[g_kind]

    expected_terms = parts.log_prob_terms_numpy(logits, x, log1p_e)
    expected_grad = parts.logit_gradient_numpy(logits, x, e, g)
    arrays = to_backend_arrays(backend, logits, x, log1p_e, e, g)
    terms = parts.LOG_PROB_TERMS[backend](arrays[0], arrays[1], arrays[2])
    grad = parts.LOGIT_GRADIENT[backend](arrays[0], arrays[1], arrays[3], arrays[4])
    np.testing.assert_allclose(to_numpy(terms), expected_terms, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)
    np.testing.assert_allclose(to_numpy(grad), expected_grad, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert to_numpy(terms).shape == shape and to_numpy(grad).shape == shape
    assert to_numpy(terms).dtype == dtype and to_numpy(grad).dtype == dtype


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(
    shape=st.sampled_from([(7,), (3, 5), (2, 3, 4)]),
    scale=st.sampled_from([1.0, 10.0, 100.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_version_equals_the_ops_formulas(backend, dtype, shape, scale, seed):
    """The op (tinyvae/ops/likelihood.py) derives log p = x l − softplus(l) and d/dl = x − σ(l); the
    kernels compute them another way (the terms from log1p(e), σ from e through an arithmetic mask). Every
    version equals the formulas as the engine's own ops write them: F.softplus and the two-branch
    stable_sigmoid, within a few ulp of the terms' size."""
    require_backend(backend)
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal(shape)).astype(dtype)
    x = rng.uniform(size=shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    e, finite = parts.exp_minus_abs(logits)
    assert finite
    softplus = to_numpy(F.softplus(tv.Tensor(logits)).data)  # on the GPU when the backend is cupy
    expected_terms = x * logits - softplus
    expected_grad = (x - stable_sigmoid(logits)) * g
    arrays = to_backend_arrays(backend, logits, x, np.log1p(e), e, g)
    terms = to_numpy(parts.LOG_PROB_TERMS[backend](arrays[0], arrays[1], arrays[2]))
    grad = to_numpy(parts.LOGIT_GRADIENT[backend](arrays[0], arrays[1], arrays[3], arrays[4]))
    # Rounding is relative to the size of the terms combined: |x l| + softplus(l) ≤ 2 |l| + log 2, and |g|.
    ulp = np.finfo(dtype).eps
    assert np.all(np.abs(terms - expected_terms) <= 8 * ulp * (np.abs(logits) + 1)), terms - expected_terms
    assert np.all(np.abs(grad - expected_grad) <= 8 * ulp * np.abs(g)), grad - expected_grad
    assert terms.dtype == grad.dtype == dtype


@given(
    x=st.lists(st.floats(-120.0, 120.0, width=32), min_size=1, max_size=64).map(
        lambda values: np.array(values, dtype=np.float32)
    )
)
def test_the_masked_sigmoid_is_the_ops_sigmoid_within_3_ulp(x):
    """sigmoid_from_e (the arithmetic mask s + [l ≥ 0](1 − 2s), moved here from the op for speed) in
    float32, random signs, |x| ≤ 120: within 3 float32 ulp of σ computed in float64 and rounded, and of the
    op's two-branch stable_sigmoid, subnormal σ(x) for x < −88 included."""
    e, _ = parts.exp_minus_abs(x)
    got = parts.sigmoid_from_e(x, e)
    x64 = x.astype(np.float64)
    exact = np.where(x64 >= 0, 1 / (1 + np.exp(-np.abs(x64))), np.exp(x64) / (1 + np.exp(x64)))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, exact, rtol=3 * 2.0**-23, atol=2 * 2.0**-149)
    np.testing.assert_allclose(got, stable_sigmoid(x), rtol=3 * 2.0**-23, atol=2 * 2.0**-149)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_minus_abs_and_its_finiteness_check(dtype):
    """e = exp(−|l|) exactly as NumPy computes it, in a new array (0-d included); ``finite`` is False
    for +inf, −inf and NaN logits (−0.0 and the largest finite value are finite)."""
    big = np.finfo(dtype).max
    logits = np.array([[-0.0, 0.0, 1.5], [-big, big, -3.0]], dtype=dtype)
    e, finite = parts.exp_minus_abs(logits)
    assert finite and e.dtype == dtype and e is not logits
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(e, np.exp(-np.abs(logits)))
    for bad in (np.inf, -np.inf, np.nan):
        with_bad = logits.copy()
        with_bad[1, 2] = bad
        assert parts.exp_minus_abs(with_bad)[1] is False
    e0, finite0 = parts.exp_minus_abs(np.array(-2.0, dtype=dtype))
    assert finite0 and e0.shape == () and e0 == np.exp(dtype(-2.0))
    assert parts.exp_minus_abs(np.zeros((0, 3), dtype))[1] is True


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_and_nan_logits_agree_with_the_reference(backend):
    """±inf logits and NaN give what the reference gives (−inf for an impossible pixel, NaN for NaN); at
    l = −100 the GPU's flush-to-zero gives 0 where the reference has a subnormal."""
    require_backend(backend)
    logits = np.array([[np.inf, -np.inf, np.nan, 0.0, -100.0, 100.0]], dtype=np.float32)
    x = np.array([[1.0, 1.0, 0.5, 0.5, 0.0, 1.0]], dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(-np.abs(logits))
        log1p_e = np.log1p(e)
        g = np.ones_like(logits)
        expected_terms = parts.log_prob_terms_numpy(logits, x, log1p_e)
        expected_grad = parts.logit_gradient_numpy(logits, x, e, g)
        arrays = to_backend_arrays(backend, logits, x, log1p_e, e, g)
        terms = to_numpy(parts.LOG_PROB_TERMS[backend](arrays[0], arrays[1], arrays[2]))
        grad = to_numpy(parts.LOGIT_GRADIENT[backend](arrays[0], arrays[1], arrays[3], arrays[4]))
    # CuPy compiles with flush-to-zero (-ftz=true): at l = −100, e = exp(−100) = 3.7e-44 is a float32
    # subnormal, which the GPU reads as 0, so its σ and log1p_e there are 0 where NumPy's are 3.7e-44.
    # Within float32's smallest normal (1.18e-38) of the reference, then; exact elsewhere.
    atol = np.finfo(np.float32).tiny if backend == "cupy" else 0
    np.testing.assert_array_equal(np.isnan(terms), np.isnan(expected_terms))
    np.testing.assert_allclose(terms, expected_terms, rtol=1e-6, atol=atol)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=atol)


def test_layouts_the_numba_version_does_not_take_fall_back_to_numpy():
    """x broadcast along a middle axis, a 0-d x and mixed dtypes go to the NumPy version (same result)."""
    require_backend("numba")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 4, 5)).astype(np.float32)
    e = np.exp(-np.abs(logits))
    for x in (
        rng.uniform(size=(3, 1, 5)).astype(np.float32),
        np.float32(0.5) * np.ones(()),
        rng.uniform(size=5),
    ):
        g = np.ones_like(logits)
        np.testing.assert_allclose(
            parts.log_prob_terms_numba(logits, x, np.log1p(e)),
            parts.log_prob_terms_numpy(logits, x, np.log1p(e)),
        )
        np.testing.assert_allclose(
            parts.logit_gradient_numba(logits, x, e, g), parts.logit_gradient_numpy(logits, x, e, g)
        )


def test_routing_follows_the_backend(monkeypatch):
    """Under the numba backend the op's arithmetic runs the numba version; under numpy, the reference."""
    require_backend("numba")
    calls = versions_called(monkeypatch, parts.LOG_PROB_TERMS, parts.LOGIT_GRADIENT)
    logits = tv.Tensor(np.zeros((2, 3), np.float32), requires_grad=True)
    x = tv.Tensor(np.ones((2, 3), np.float32))

    def step(backend):
        calls.clear()
        F.bernoulli_log_prob(logits, x).sum().backward()
        assert calls == [backend, backend]

    run_under_each_cpu_backend(step)


def test_unknown_backend_is_named():
    z = np.zeros((1, 1), np.float32)
    with pytest.raises(ValueError, match=r"logit_gradient: backend 'fortran' is not one of"):
        parts.logit_gradient(z, z, z, z, backend="fortran")


def test_import_compiles_nothing():
    """Importing the kernel file (as the op module does) neither imports numba nor compiles."""
    import subprocess
    import sys

    code = (
        "import sys, tinyvae.kernels.bernoulli_parts as p; "
        "assert 'numba' not in sys.modules; assert p._numba_kernels.cache_info().currsize == 0"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
