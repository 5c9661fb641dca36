"""The fused Adam update: every version equals the NumPy reference, in float32 and float64."""

import numpy as np
import pytest
from backends import BACKENDS, require_backend, to_backend_arrays, to_numpy
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tinyvae.kernels import adam

# Tolerances: each version rounds the same few operations in a different order (a fused multiply-add in
# one, separate ufuncs in the other), so p differs by a few ulps of its update step.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9),
    seed=st.integers(0, 2**32 - 1),
    step=st.integers(1, 1000),
)
def test_every_version_matches_the_numpy_reference(backend, dtype, shape, seed, step):
    """One Adam step from random (p, g, m, v ≥ 0) gives the reference's p, m and v, empty and size-1 shapes
    included; the gradient may be non-contiguous."""
    require_backend(backend)
    rng = np.random.default_rng(seed)
    param, m = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    v = rng.uniform(0, 2, shape).astype(dtype)
    grad = np.asfortranarray(rng.standard_normal(shape).astype(dtype))  # non-contiguous rows for ndim >= 2
    lr_t, eps_t = 1e-3 * np.sqrt(1 - 0.999**step) / (1 - 0.9**step), 1e-8 * np.sqrt(1 - 0.999**step)
    expected = [a.copy() for a in (param, m, v)]
    adam.adam_update_numpy(*expected[:1], grad, *expected[1:], lr_t, eps_t, 0.9, 0.999)
    got = to_backend_arrays(backend, param.copy(), np.ascontiguousarray(grad), m.copy(), v.copy())
    adam.IMPLEMENTATIONS[backend](got[0], got[1], got[2], got[3], lr_t, eps_t, 0.9, 0.999)
    for name, e, g in zip(("param", "m", "v"), expected, (got[0], got[2], got[3]), strict=True):
        np.testing.assert_allclose(to_numpy(g), e, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3, err_msg=name)
        assert to_numpy(g).dtype == dtype


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_minus_beta_is_rounded_once(backend, dtype):
    """From m = v = 0 and g = 1, one step gives m = 1 − β1 and v = 1 − β2 exactly as the reference rounds
    them: 1 − β computed in float64 and rounded once to the dtype. Computing it on the device from a β
    already rounded to float32 gives v = 0.0009999871 for β2 = 0.999 (1.3e-5 off), as the CuPy version
    once did."""
    require_backend(backend)
    param, grad, m, v = np.ones(5, dtype), np.ones(5, dtype), np.zeros(5, dtype), np.zeros(5, dtype)
    got = to_backend_arrays(backend, param, grad, m, v)
    adam.IMPLEMENTATIONS[backend](*got, 1e-3, 1e-8, 0.9, 0.999)
    np.testing.assert_array_equal(to_numpy(got[2]), np.full(5, 1 - 0.9, dtype))
    np.testing.assert_array_equal(to_numpy(got[3]), np.full(5, 1 - 0.999, dtype))


def test_the_cupy_scalars_are_computed_in_float64():
    """The scalars the CuPy kernel receives (checked without a GPU): 1 − β1 and 1 − β2 rounded once from
    float64, not 1 − β computed in float32, which for β2 = 0.999 is 1.3e-5 off; the kernel takes them as
    parameters in that order rather than forming 1 − β itself."""
    lr, eps, b1, b2, one_minus_b1, one_minus_b2 = adam.cupy_scalars(np.float32, 1e-3, 1e-8, 0.9, 0.999)
    assert all(s.dtype == np.float32 for s in (lr, eps, b1, b2, one_minus_b1, one_minus_b2))
    assert (b1, b2) == (np.float32(0.9), np.float32(0.999))
    assert one_minus_b1 == np.float32(1 - 0.9) and one_minus_b2 == np.float32(1 - 0.999)
    assert one_minus_b2 != np.float32(1) - np.float32(0.999)  # the error this avoids is real
    names = [p.split()[-1] for p in adam.CUPY_KERNEL.in_params.split(",")]
    assert names == ["g", "lr", "eps", "b1", "b2", "one_minus_b1", "one_minus_b2"]
    assert "1 -" not in adam.CUPY_KERNEL.operation


def test_shape_mismatch_is_named():
    """A moment buffer of the wrong shape is refused, naming it and both shapes."""
    p = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"m has shape \(4,\) but the parameter has shape \(3,\)"):
        adam.adam_update_numba(p, p.copy(), np.zeros(4, np.float32), p.copy(), 1e-3, 1e-8, 0.9, 0.999)


def test_import_compiles_nothing():
    """Importing the kernel imports no numba and compiles nothing; the first call does."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom tinyvae.kernels import adam\n"
        "assert 'numba' not in sys.modules and not adam.COMPILE_SECONDS\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_update_all_equals_the_reference_parameter_by_parameter(backend):
    """adam_update_all (what tv.optim.Adam calls: one dispatch for the whole list) gives each parameter
    the NumPy reference's update, for mixed shapes and a non-contiguous gradient."""
    require_backend(backend)
    rng = np.random.default_rng(7)
    shapes = [(5, 3), (3,), (), (4, 1, 2)]
    states = [
        [rng.standard_normal(s).astype(np.float32), rng.standard_normal(s).astype(np.float32)]
        + [rng.standard_normal(s).astype(np.float32), rng.uniform(0, 2, s).astype(np.float32)]
        for s in shapes
    ]  # param, grad, m, v
    states[0][1] = np.asfortranarray(states[0][1])
    expected = []
    for param, grad, m, v in states:
        p, m_, v_ = param.copy(), m.copy(), v.copy()
        adam.adam_update_numpy(p, grad, m_, v_, 1e-3, 1e-8, 0.9, 0.999)
        expected.append((p, m_, v_))
    updates = []
    for param, grad, m, v in states:
        p, g, m_, v_ = to_backend_arrays(backend, param.copy(), grad, m.copy(), v.copy())
        updates.append((p, g, m_, v_, None if backend == "numba" else p.copy()))  # work: scratch space
    adam.adam_update_all(updates, 1e-3, 1e-8, 0.9, 0.999, backend=backend)
    for (p, _, m_, v_, _), want in zip(updates, expected, strict=True):
        for got, ref in zip((p, m_, v_), want, strict=True):
            np.testing.assert_allclose(to_numpy(got), ref, rtol=1e-5, atol=1e-8)
