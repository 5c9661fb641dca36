"""Which backends can run here, for tests parametrized over them: unavailable ones are skipped with the
reason visible in `pytest -rs`, never silently."""

import pytest

import tinyvae as tv

BACKENDS = ["numpy", "numba", "cupy"]
CPU_BACKENDS = ["numpy", "numba"]  # the engine-level tests hold NumPy arrays; CuPy is checked per kernel


def require_backend(name):
    """Skip the calling test, with the reason, unless backend ``name`` can run on this machine."""
    ok, detail = tv.backend.available()[name]
    if not ok:
        pytest.skip(f"backend {name} unavailable: {detail}")


def to_backend_arrays(name, *arrays):
    """The arrays as the backend holds them (CuPy arrays for cupy, unchanged otherwise)."""
    if name != "cupy":
        return arrays
    import cupy

    return tuple(cupy.asarray(a) for a in arrays)


def to_numpy(array):
    return array.get() if hasattr(array, "get") else array
