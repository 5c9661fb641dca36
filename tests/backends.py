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


def versions_called(monkeypatch, *version_tables):
    """Wrap the "numpy" and "numba" entries of kernel version tables so that each call appends its
    backend's name to the returned list (the routing tests read it)."""
    calls = []
    for table in version_tables:
        for name in ("numpy", "numba"):
            monkeypatch.setitem(table, name, lambda *a, _f=table[name], _n=name: calls.append(_n) or _f(*a))
    return calls


def run_under_each_cpu_backend(step):
    """Call ``step(backend)`` under tv.backend.use("numba") and then "numpy", restoring the backend after."""
    previous = tv.backend.current()
    try:
        for backend in ("numba", "numpy"):
            tv.backend.use(backend)
            step(backend)
    finally:
        tv.backend.use(previous)
