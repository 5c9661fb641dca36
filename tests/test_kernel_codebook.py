"""Every nearest-codebook implementation against the float64 brute-force reference.

Tolerances (eps = machine epsilon of the input dtype):
- indices: identical to the reference, except where the reference's float64 distances of the two codes
  differ by less than the rounding of the GEMM trick, ``8 (D + 2) (eps (‖z‖ + max‖e‖)² + tiny)``;
- sq_dist: recomputed directly for the chosen code, so relative error ``4 (D + 2) eps`` against the float64
  distance of that same code (plus a tiny absolute floor for distances that are exactly 0).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tinyvae.kernels import codebook as cb

import tinyvae as tv

IMPLEMENTATIONS = ["numpy", "numba", "cupy"]


def get_impl(name):
    """The implementation called ``name`` as a NumPy-in / NumPy-out function, or skip with the reason."""
    if name == "numpy":
        return cb.nearest_code_numpy
    if name == "numba":
        numba_ok, why_not = tv.backend.available()["numba"]
        if not numba_ok:
            pytest.skip(why_not)
        return cb.nearest_code_numba
    if name == "cupy":
        try:
            import cupy
        except ImportError:
            pytest.skip("cupy not installed")
        try:
            if cupy.cuda.runtime.getDeviceCount() == 0:
                pytest.skip("cupy installed but no CUDA device")
        except cupy.cuda.runtime.CUDARuntimeError as err:
            pytest.skip(f"cupy installed but no CUDA device ({err})")

        def on_gpu(z, codebook):
            indices, sq_dist = cb.nearest_code_cupy(cupy.asarray(z), cupy.asarray(codebook))
            return cupy.asnumpy(indices), cupy.asnumpy(sq_dist)

        return on_gpu
    raise AssertionError(name)


def assert_matches_reference(z, codebook, indices, sq_dist):
    """The module's tolerance contract (see the docstring at the top of this file)."""
    ref_idx, ref_sq = cb.nearest_code_reference(z, codebook)
    n, d = z.shape
    assert indices.shape == (n,) and indices.dtype == np.int64
    assert sq_dist.shape == (n,) and sq_dist.dtype == z.dtype
    if n == 0:
        return
    eps = np.finfo(z.dtype).eps
    assert np.all((indices >= 0) & (indices < codebook.shape[0]))
    z64, codes64 = z.astype(np.float64), codebook.astype(np.float64)
    chosen = ((z64 - codes64[indices]) ** 2).sum(axis=1)  # (N,) exact distance of the chosen code
    scale = (np.linalg.norm(z64, axis=1) + np.linalg.norm(codes64, axis=1).max()) ** 2  # (N,)
    # Squares below float's smallest normal flush to 0 in the input dtype, hence the absolute floor.
    tie_tol = 8 * (d + 2) * (eps * scale + np.finfo(z.dtype).tiny)
    differs = indices != ref_idx
    assert np.all(chosen[differs] - ref_sq[differs] <= tie_tol[differs]), (
        f"rows {np.flatnonzero(differs)[:5]} chose a code that is not a near-tie of the nearest one"
    )
    np.testing.assert_allclose(sq_dist, chosen, rtol=4 * (d + 2) * eps, atol=10 * np.finfo(z.dtype).tiny)


@st.composite
def problems(draw):
    """(z, codebook): small shapes including N = 0, K = 1, D = 1; values that repeat (so exact ties occur);
    z in one of three layouts: C-contiguous, transposed (Fortran order), every other row of a bigger array."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = draw(st.integers(0, 40))
    k = draw(st.integers(1, 24))
    d = draw(st.integers(1, 12))
    elements = st.floats(-8, 8, width=32, allow_subnormal=False)
    codebook = draw(hnp.arrays(dtype, (k, d), elements=elements))
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided"]))
    if layout == "transposed":
        z = draw(hnp.arrays(dtype, (d, n), elements=elements)).T
    elif layout == "strided":
        z = draw(hnp.arrays(dtype, (2 * n, d), elements=elements))[::2]
    else:
        z = draw(hnp.arrays(dtype, (n, d), elements=elements))
    return z, codebook


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@settings(max_examples=60, deadline=None)
@given(problem=problems())
def test_matches_float64_reference(name, problem):
    """Indices equal the float64 brute force up to sub-rounding ties; sq_dist is the chosen code's."""
    impl = get_impl(name)
    z, codebook = problem
    indices, sq_dist = impl(z, codebook)
    assert_matches_reference(z, codebook, indices, sq_dist)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_inputs_across_chunks(name, dtype):
    """Many rows and a chunk budget small enough that the fast paths run several chunks and blocks."""
    impl = get_impl(name)
    rng = np.random.default_rng(1)
    z = rng.standard_normal((3000, 7)).astype(dtype)  # (N, D)
    codebook = rng.standard_normal((300, 7)).astype(dtype)  # (K, D)
    if name in ("numpy", "numba"):
        fn = cb.nearest_code_numpy if name == "numpy" else cb.nearest_code_numba
        indices, sq_dist = fn(z, codebook, chunk_bytes=300 * z.itemsize * 700)  # 700 rows per chunk
    else:
        indices, sq_dist = impl(z, codebook)
    assert_matches_reference(z, codebook, indices, sq_dist)


TIE_CASES = [
    # (codebook, rows of z, expected index per row, expected sq_dist per row)
    # Unit codes around the origin: each z below is at distance 1 from exactly two of them (and farther
    # from the others, including the first code, so the tie is never simply "index 0").
    (
        [[3, 3], [2, 0], [0, 1], [1, 0], [-1, 0], [0, -1], [0, 2]],
        [[1, 1], [1, -1], [-1, -1]],
        [2, 3, 4],
        [1, 1, 1],
    ),
    # Tied codes with different norms (‖e‖² = 4 vs 0), in both orders: ‖e‖² − 2 z·e is 0 for both, exactly.
    ([[5, 5], [2, 0], [0, 0]], [[1, 1]], [1], [2]),
    ([[5, 5], [0, 0], [2, 0]], [[1, 1]], [1], [2]),
]


@pytest.mark.parametrize("name", ["reference", *IMPLEMENTATIONS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(TIE_CASES)))
def test_exact_ties_go_to_lowest_index(name, dtype, case):
    """Codes at exactly equal distance (small integers, so every step of every version is exact even in
    float32): the lowest index wins, for rows in every position of a chunk and of a numba block (600 rows)."""
    impl = cb.nearest_code_reference if name == "reference" else get_impl(name)
    codes, rows, expected_idx, expected_sq = TIE_CASES[case]
    codebook = np.array(codes, dtype=dtype)  # (K, 2)
    repeats = 600 // len(rows)
    z = np.tile(np.array(rows, dtype=dtype), (repeats, 1))  # (N, 2)
    indices, sq_dist = impl(z, codebook)
    np.testing.assert_array_equal(indices, np.tile(expected_idx, repeats))
    np.testing.assert_array_equal(sq_dist, np.tile(expected_sq, repeats))


@pytest.mark.parametrize("name", ["reference", *IMPLEMENTATIONS])
def test_tie_with_duplicate_codes_many_columns(name):
    """K = 700 copies of one code plus a farther code first: every row picks index 1, the lowest tied one."""
    impl = cb.nearest_code_reference if name == "reference" else get_impl(name)
    codebook = np.full((701, 3), 0.5, dtype=np.float32)  # (K, D)
    codebook[0] = 4.0
    z = np.tile(np.float32([0.5, 0.25, 1.0]), (5, 1))  # (N, D)
    indices, sq_dist = impl(z, codebook)
    np.testing.assert_array_equal(indices, np.ones(5, dtype=np.int64))
    np.testing.assert_allclose(sq_dist, np.full(5, 0.0625 + 0.25, dtype=np.float32), rtol=1e-6)


@pytest.mark.parametrize("name", ["reference", *IMPLEMENTATIONS])
def test_empty_and_single(name):
    """N = 0 gives empty outputs of the right dtypes; K = 1 gives index 0 everywhere."""
    impl = cb.nearest_code_reference if name == "reference" else get_impl(name)
    indices, sq_dist = impl(np.zeros((0, 3), np.float32), np.ones((4, 3), np.float32))
    assert indices.shape == (0,) and indices.dtype == np.int64 and sq_dist.shape == (0,)
    indices, sq_dist = impl(np.arange(6, dtype=np.float64).reshape(3, 2), np.ones((1, 2)))
    np.testing.assert_array_equal(indices, [0, 0, 0])
    np.testing.assert_allclose(sq_dist, [1.0, 5.0, 25.0])


BAD_INPUTS = [
    (np.zeros(3), np.zeros((2, 3)), ValueError, r"z has shape \(3,\) but must be 2-D \(N, D\)"),
    (
        np.zeros((4, 3)),
        np.zeros((2, 3, 1)),
        ValueError,
        r"codebook has shape \(2, 3, 1\) but must be 2-D \(K, D\)",
    ),
    (
        np.zeros((4, 3)),
        np.zeros((2, 5)),
        ValueError,
        r"z has shape \(4, 3\) \(D = 3\) but codebook has shape \(2, 5\)",
    ),
    (
        np.zeros((4, 3), int),
        np.zeros((2, 3)),
        TypeError,
        r"z has dtype int64 \(shape \(4, 3\)\) but must be float",
    ),
    (np.zeros((4, 3)), np.zeros((2, 3), np.int32), TypeError, r"codebook has dtype int32"),
    (
        np.zeros((4, 3)),
        np.zeros((0, 3)),
        ValueError,
        r"codebook has shape \(0, 3\) but must hold at least one code",
    ),
    (
        np.zeros((4, 3), np.float32),
        np.zeros((2, 3)),
        TypeError,
        r"z has dtype float32 but codebook has dtype float64",
    ),
]


@pytest.mark.parametrize("name", ["reference", *IMPLEMENTATIONS])
@pytest.mark.parametrize("z, codebook, error, message", BAD_INPUTS)
def test_bad_input_names_the_argument(name, z, codebook, error, message):
    """Wrong ndim, mismatched D, integer dtype, mixed dtypes, empty codebook: a clear error naming the
    argument, the shape received and what was expected."""
    impl = cb.nearest_code_reference if name == "reference" else get_impl(name)
    with pytest.raises(error, match=message):
        impl(z, codebook)


def test_import_compiles_nothing():
    """Importing the module neither imports numba nor compiles the kernel (that happens on first use)."""
    import subprocess
    import sys

    code = (
        "from tinyvae.kernels import codebook as cb\n"
        "assert cb._numba_kernel.cache_info().currsize == 0\n"
        "import sys; assert cb.numba is None and 'numba' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_checker_can_fail():
    """The tolerance check rejects a wrong answer (the farthest code), so the tests above can fail."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((50, 4))
    codebook = rng.standard_normal((10, 4))
    dist = ((z[:, None, :] - codebook[None]) ** 2).sum(-1)
    wrong = dist.argmax(axis=1)
    with pytest.raises(AssertionError):
        assert_matches_reference(z, codebook, wrong, dist[np.arange(50), wrong])


def test_dispatcher_picks_and_names_backends():
    """nearest_code uses numba when installed (else NumPy) for NumPy arrays, honours backend=, and an unknown
    backend name is an error listing the known ones."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((20, 3)).astype(np.float32)
    codebook = rng.standard_normal((5, 3)).astype(np.float32)
    expected = cb.nearest_code_reference(z, codebook)[0]
    np.testing.assert_array_equal(cb.nearest_code(z, codebook)[0], expected)
    np.testing.assert_array_equal(cb.nearest_code(z, codebook, backend="numpy")[0], expected)
    with pytest.raises(ValueError, match=r"backend 'fortran' is not one of \['cupy', 'numba', 'numpy'\]"):
        cb.nearest_code(z, codebook, backend="fortran")


def test_numba_refuses_more_codes_than_its_int32_indices_hold():
    """The fused pass keeps code indices in int32; a codebook of 2**31 codes is refused with a message
    (a zero-copy broadcast view, so the test allocates nothing)."""
    nearest_code = get_impl("numba")
    z = np.zeros((1, 1), dtype=np.float32)
    huge_codebook = np.broadcast_to(np.zeros((1, 1), dtype=np.float32), (2**31, 1))
    with pytest.raises(ValueError, match=r"2147483648 codes; at most 2\*\*31 - 1"):
        nearest_code(z, huge_codebook)
