"""The row-wise log-sum-exp kernel (kernels/unrouted/logsumexp.py, called by no op): every version equals
the NumPy reference (finite, large, −inf rows, empty and size-1 dims, non-contiguous input), and the
reference equals the engine's F.logsumexp and its backward."""

import numpy as np
import pytest
from backends import BACKENDS, require_backend, to_backend_arrays, to_numpy
from hypothesis import given
from hypothesis import strategies as st
from tinyvae.kernels.unrouted import logsumexp

import tinyvae as tv
import tinyvae.functional as F

# Tolerances: the versions sum C exponentials in different orders (a float64 accumulator in numba and
# CuPy, NumPy's pairwise float32 sum), so out differs by ~C ulps of log(sum) ≤ log C, plus the rounding
# of the shift (relative, for inputs of magnitude 1e4); softmax entries are in [0, 1].
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_matches_reference(backend, x, dtype):
    expected_out, expected_softmax = logsumexp.logsumexp_rows_numpy(x)
    out, softmax = logsumexp.IMPLEMENTATIONS[backend](*to_backend_arrays(backend, x))
    out, softmax = to_numpy(out), to_numpy(softmax)
    assert out.dtype == dtype and softmax.dtype == dtype
    assert out.shape == (x.shape[0],) and softmax.shape == x.shape
    np.testing.assert_allclose(out, expected_out, rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(softmax, expected_softmax, rtol=RTOL[dtype], atol=RTOL[dtype])
    return out, softmax


@st.composite
def row_inputs(draw):
    """(x, dtype): up to 6 rows of up to 60 columns (0 and 1 included), scale up to 1e4, some entries
    −inf, some rows all −inf, possibly a non-contiguous view (a transpose or every other column)."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rows, cols = draw(st.integers(0, 6)), draw(st.integers(0, 60))
    scale = draw(st.sampled_from([1.0, 30.0, 1e4]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layout = draw(st.sampled_from(["c", "transposed", "strided"]))
    if layout == "transposed":  # the IWAE layout: (K, B) log-weights read as (B, K)
        x = (scale * rng.standard_normal((cols, rows))).astype(dtype).T
    elif layout == "strided":
        x = (scale * rng.standard_normal((rows, 2 * cols))).astype(dtype)[:, ::2]
    else:
        x = (scale * rng.standard_normal((rows, cols))).astype(dtype)
    mask = rng.uniform(size=x.shape) < draw(st.sampled_from([0.0, 0.2, 0.9]))
    x[mask] = -np.inf  # writes through the view
    if rows and draw(st.booleans()):
        x[draw(st.integers(0, rows - 1))] = -np.inf  # one all −inf row
    return x, dtype


@pytest.mark.parametrize("backend", BACKENDS)
@given(inputs=row_inputs())
def test_every_version_matches_the_reference(backend, inputs):
    """Out and softmax agree with the reference; out is finite unless the row is all −inf, the softmax is
    finite, 0 at −inf entries, and each row sums to 1 (0 for an all −inf row)."""
    require_backend(backend)
    x, dtype = inputs
    out, softmax = assert_matches_reference(backend, x, dtype)
    dead = np.all(x == -np.inf, axis=1)  # also true for a row with no columns
    assert np.all(out[dead] == -np.inf) and np.isfinite(out[~dead]).all()
    assert np.isfinite(softmax).all() and np.all(softmax[x == -np.inf] == 0)
    np.testing.assert_allclose(softmax.sum(axis=1), np.where(dead, 0, 1), atol=10 * RTOL[dtype] + 1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_cases(backend, dtype):
    """Magnitude 1e4 (where exp without the shift overflows even float64), an all −inf row, a row with
    one finite entry, one column, one row, and no columns."""
    require_backend(backend)
    inf = np.inf
    x = np.array(
        [[1e4, 1e4 - 1, -1e4], [-1e4, -1e4, -1e4], [-inf, -inf, -inf], [-inf, 3.0, -inf], [0.0, 0.0, 0.0]],
        dtype=dtype,
    )
    out, softmax = assert_matches_reference(backend, x, dtype)
    np.testing.assert_allclose(out[:2], [1e4 + np.log1p(np.exp(-1.0)), -1e4 + np.log(3)], rtol=RTOL[dtype])
    assert out[2] == -inf and np.all(softmax[2] == 0)
    assert out[3] == 3 and np.array_equal(softmax[3], [0, 1, 0])
    np.testing.assert_allclose(out[4], np.log(3), rtol=RTOL[dtype])
    for shape in [(4, 1), (1, 7), (1, 1), (3, 0), (0, 3), (0, 0)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
        out, softmax = assert_matches_reference(backend, x, dtype)
        if shape[1] == 1:
            assert np.array_equal(out, x[:, 0]) and np.all(softmax == 1)
        if shape[1] == 0:
            assert np.all(out == -inf)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_nan_makes_its_row_nan(backend, dtype):
    """A row holding a NaN gives out = NaN and a NaN softmax row in every version, as the reference does
    (a max that skips NaN must not hide it: a diverged IWAE weight has to show), wherever the NaN sits: beside
    finite values, +inf or −inf, alone, or at column 37 of 40 (in the CuPy version only one lane of the warp
    sees it). The rows without a NaN are untouched."""
    require_backend(backend)
    nan, inf = np.nan, np.inf
    rows = [
        [1.0, nan, 2.0],
        [nan, nan, nan],
        [nan, -inf, -inf],
        [inf, nan, 1.0],
        [nan, 5.0, inf],
        [1e4, nan, -1e4],
        [0.5, 1.0, -2.0],  # no NaN: the finite answer
    ]
    x = np.array([r + [-inf] * 37 for r in rows], dtype=dtype)  # 40 columns: more than one warp's width
    far = np.array([0.5, 1.0, -2.0] + [-inf] * 37, dtype=dtype)
    far[37] = nan  # a NaN that only one lane of a warp sees
    x = np.vstack([x, far])
    has_nan = np.isnan(x).any(axis=1)
    expected_out, expected_softmax = logsumexp.logsumexp_rows_numpy(x)
    assert np.isnan(expected_out[has_nan]).all() and np.isnan(expected_softmax[has_nan]).all()
    with np.errstate(invalid="ignore"):
        out, softmax = (
            to_numpy(a) for a in logsumexp.IMPLEMENTATIONS[backend](*to_backend_arrays(backend, x))
        )
    assert np.isnan(out[has_nan]).all(), out
    assert np.isnan(softmax[has_nan]).all(), softmax[has_nan]
    np.testing.assert_allclose(out[~has_nan], expected_out[~has_nan], rtol=RTOL[dtype])
    np.testing.assert_allclose(
        softmax[~has_nan], expected_softmax[~has_nan], rtol=RTOL[dtype], atol=RTOL[dtype]
    )


@pytest.mark.parametrize("seed", range(5))
def test_reference_equals_the_engine_op(seed):
    """F.logsumexp over the last axis and its backward (g · softmax) equal the kernel (float64), with a
    −inf entry and an all −inf row."""
    rng = np.random.default_rng(seed)
    data = 10 * rng.standard_normal((5, 8))
    data[0, 3] = -np.inf
    data[4] = -np.inf
    x = tv.Tensor(data, requires_grad=True)
    g = rng.standard_normal(5)
    y = F.logsumexp(x, axis=-1)
    (y * g).sum().backward()
    out, softmax = logsumexp.logsumexp_rows_numpy(data)
    np.testing.assert_allclose(out, y.data, rtol=1e-14)
    np.testing.assert_allclose(g[:, None] * softmax, x.grad, rtol=1e-13, atol=1e-300)


def test_entry_point_follows_the_backend():
    """logsumexp_rows picks the numba version under the numba backend, else the reference; an unknown
    backend name is refused, and a 1-D input is refused with its shape."""
    x = np.random.default_rng(0).standard_normal((3, 4))
    expected, _ = logsumexp.logsumexp_rows_numpy(x)
    np.testing.assert_allclose(logsumexp.logsumexp_rows(x)[0], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="backend 'fortran' is not one of"):
        logsumexp.logsumexp_rows(x, backend="fortran")
    with pytest.raises(ValueError, match=r"x has shape \(4,\); it must be 2-D"):
        logsumexp.logsumexp_rows_numpy(x[0])
    assert tv.backend.current() in ("numpy", "numba", "cupy")


def test_numba_on_two_threads_matches():
    """The numba version run on numba's whole pool (as the benchmark's 2-thread rows do) gives the same
    numbers as on one thread."""
    require_backend("numba")
    x = np.random.default_rng(1).standard_normal((128, 50)).astype(np.float32)
    one = logsumexp.logsumexp_rows_numba(x)
    two = logsumexp.logsumexp_rows_numba(x, threads=2)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


def test_import_compiles_nothing():
    """Importing the kernel imports no numba and compiles nothing; the first call does."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom tinyvae.kernels.unrouted import logsumexp\n"
        "assert logsumexp.numba is None and 'numba' not in sys.modules and not logsumexp.COMPILE_SECONDS\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
