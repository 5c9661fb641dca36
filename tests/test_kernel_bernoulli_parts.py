"""The fused arithmetic around the Bernoulli log-probability's exp and log1p (kernels/bernoulli_parts.py):
every version equals the NumPy reference on the layouts the op produces and on the ones the numba version
hands back to NumPy, and the op routes through it."""

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
def test_infinite_and_nan_logits_agree_with_the_reference(backend):
    """±inf logits and NaN give what the reference gives (−inf for an impossible pixel, NaN for NaN)."""
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
    np.testing.assert_array_equal(np.isnan(terms), np.isnan(expected_terms))
    np.testing.assert_allclose(terms, expected_terms, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6)


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
