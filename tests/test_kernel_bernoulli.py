"""The fused Bernoulli log-likelihood kernel (kernels/unrouted/bernoulli.py, called by no op): every version
equals the NumPy reference and the reference equals the engine's elementwise op summed over the features."""

import numpy as np
import pytest
from backends import BACKENDS, require_backend, to_backend_arrays, to_numpy
from hypothesis import given
from hypothesis import strategies as st
from tinyvae.kernels.unrouted import bernoulli

import tinyvae as tv
import tinyvae.functional as F

# The versions sum D float32 terms in different orders (float64 accumulator in numba): tolerances scale
# with the number of features.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(
    rows=st.integers(0, 6),
    repeats=st.integers(1, 3),
    features=st.integers(1, 40),
    scale=st.sampled_from([1.0, 10.0, 100.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_version_matches_the_reference(backend, dtype, rows, repeats, features, scale, seed):
    """Row sums and gradients agree with the NumPy reference, logits of magnitude up to 100 included, with
    x repeating along the rows (IWAE's k samples of one batch)."""
    require_backend(backend)
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((rows * repeats, features))).astype(dtype)
    x = rng.uniform(size=(rows, features)).astype(dtype) if rows else np.zeros((1, features), dtype)
    expected_out, expected_grad = bernoulli.bernoulli_numpy(logits, x)
    out, grad = bernoulli.IMPLEMENTATIONS[backend](*to_backend_arrays(backend, logits, x))
    atol = RTOL[dtype] * features * scale
    np.testing.assert_allclose(to_numpy(out), expected_out, rtol=RTOL[dtype], atol=atol)
    np.testing.assert_allclose(to_numpy(grad), expected_grad, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert np.isfinite(to_numpy(out)).all() and np.isfinite(to_numpy(grad)).all()


def test_reference_equals_the_elementwise_op():
    """Σ_d bernoulli_log_prob(l, x) and its gradient x − σ(l), from the engine, equal the kernel (float64)."""
    rng = np.random.default_rng(0)
    logits = tv.Tensor(5 * rng.standard_normal((4, 7)), requires_grad=True)
    x = rng.uniform(size=(4, 7))
    total = F.bernoulli_log_prob(logits, x).sum(axis=-1)
    total.sum().backward()
    out, grad = bernoulli.bernoulli_numpy(logits.data, x)
    np.testing.assert_allclose(out, total.data, rtol=1e-14)
    np.testing.assert_allclose(grad, logits.grad, rtol=1e-14, atol=1e-300)


def test_rows_must_be_a_multiple():
    """Logits whose row count is not a multiple of x's are refused with both counts."""
    with pytest.raises(ValueError, match="logits have 5 rows, which is not a multiple of x's 2 rows"):
        bernoulli.bernoulli_numpy(np.zeros((5, 3)), np.zeros((2, 3)))
