"""Backend selection: the environment variable, tv.backend.use, clear errors, and a lazy import."""

import json
import os
import subprocess
import sys

import pytest

import tinyvae as tv


def run_python(code, **environment):
    """Run ``code`` in a fresh interpreter (backend choice happens once per process) and return stdout."""
    env = {**os.environ, **environment}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_compiles_nothing_and_loads_no_backend():
    """`import tinyvae` and building a tensor import neither numba nor CuPy: the choice waits for a kernel."""
    loaded = run_python(
        "import sys, tinyvae as tv; tv.Tensor([1.0]) * 2.0; "
        "print(sorted(m for m in ('numba', 'cupy') if m in sys.modules))"
    )
    assert loaded == "[]"


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_environment_variable_selects_the_backend(name):
    """TINYVAE_BACKEND=name makes that backend current, and info() says so and why."""
    if name == "numba" and not tv.backend.available()["numba"][0]:
        pytest.skip("numba is not installed")
    out = run_python("import json, tinyvae as tv; print(json.dumps(tv.backend.info()))", TINYVAE_BACKEND=name)
    info = json.loads(out)
    assert info["backend"] == name
    assert f"TINYVAE_BACKEND={name}" in info["reason"]


def test_auto_prefers_numba_on_a_cpu_machine():
    """auto picks CuPy only with a GPU, else numba when it imports, else NumPy."""
    available = tv.backend.available()
    expected = "cupy" if available["cupy"][0] else "numba" if available["numba"][0] else "numpy"
    assert run_python("import tinyvae as tv; print(tv.backend.current())", TINYVAE_BACKEND="auto") == expected


def test_unknown_backend_lists_the_valid_names():
    """A misspelt backend is refused with the list of valid names."""
    with pytest.raises(tv.backend.BackendError, match=r"unknown backend 'numbaa'.*'auto', 'numpy', 'numba'"):
        tv.backend.use("numbaa")


def test_unavailable_backend_says_what_is_installed():
    """Asking for a backend that cannot run explains why and lists the ones that can."""
    if tv.backend.available()["cupy"][0]:
        pytest.skip("a GPU is present here, so cupy is available")
    with pytest.raises(
        tv.backend.BackendError, match=r"'cupy' is not available: cupy.*Available here: numpy"
    ):
        tv.backend.use("cupy")


def test_use_switches_and_info_reports_it():
    """use() changes the current backend and info() reports the change."""
    previous = tv.backend.current()
    try:
        assert tv.backend.use("numpy") == "numpy"
        assert tv.backend.current() == "numpy"
        assert tv.backend.info()["reason"] == "tv.backend.use('numpy') asked for numpy"
    finally:
        tv.backend.use(previous)
