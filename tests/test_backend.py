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


# ---------------------------------------------------------------- cpu / gpu requests and the CuPy probe


def test_cpu_request_picks_numba_and_says_so():
    """TINYVAE_BACKEND=cpu is numba where it imports (NumPy otherwise), and info() names the request."""
    info = json.loads(
        run_python("import json, tinyvae as tv; print(json.dumps(tv.backend.info()))", TINYVAE_BACKEND="cpu")
    )
    assert info["backend"] == ("numba" if tv.backend.available()["numba"][0] else "numpy")
    assert info["reason"].startswith("TINYVAE_BACKEND=cpu asked for the CPU")


def test_gpu_request_without_a_working_gpu_says_how_to_install():
    """Asking for the GPU where CuPy cannot run names the extras that install it."""
    if tv.backend.available()["cupy"][0]:
        pytest.skip("a working GPU is present here")
    with pytest.raises(tv.backend.BackendError, match=r"'cupy' is not available: .*tinyvae\[gpu12\].*gpu13"):
        tv.backend.use("gpu")


def test_auto_says_why_cupy_was_not_chosen():
    if tv.backend.available()["cupy"][0]:
        pytest.skip("a working GPU is present here")
    reason = run_python("import tinyvae as tv; print(tv.backend.info()['reason'])", TINYVAE_BACKEND="auto")
    assert reason.startswith("auto: ") and "; not cupy: cupy" in reason, reason


def _fake_cupy(device_count=1, kernel_error=None, kernel_result=(1.0, 2.0, 5.0, 10.0)):
    """A module standing in for CuPy in the probe: a device count, and an ElementwiseKernel that fails to
    compile (kernel_error) or returns kernel_result."""
    import types

    import numpy

    def elementwise_kernel(*definition):
        if kernel_error is not None:
            raise kernel_error
        return lambda x: types.SimpleNamespace(get=lambda: numpy.asarray(kernel_result, dtype=numpy.float32))

    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: device_count, getDeviceProperties=lambda index: {"name": b"Fake GPU"}
    )
    return types.SimpleNamespace(
        __version__="14.0.0",
        cuda=types.SimpleNamespace(runtime=runtime),
        ElementwiseKernel=elementwise_kernel,
        arange=lambda n, dtype: None,
        float32="float32",
    )


@pytest.fixture
def probe_with(monkeypatch):
    """Install a fake CuPy for the probe (its result is cached, so the cache is cleared before and after)."""

    def install(fake):
        monkeypatch.setitem(sys.modules, "cupy", fake)
        tv.backend._probe_cupy.cache_clear()
        return tv.backend._probe_cupy()

    yield install
    tv.backend._probe_cupy.cache_clear()


def test_probe_accepts_a_gpu_only_when_a_kernel_runs(probe_with):
    ok, detail = probe_with(_fake_cupy())
    assert ok and detail == "14.0.0 on Fake GPU (a test kernel compiled and ran)"


def test_probe_refuses_a_gpu_whose_toolkit_cannot_compile(probe_with, monkeypatch):
    """A device count is not enough: CuPy sees the GPU but NVRTC is missing, so auto must not pick CuPy."""
    missing = OSError("libnvrtc.so.12: cannot open shared object file: No such file or directory")
    ok, detail = probe_with(_fake_cupy(kernel_error=missing))
    assert not ok
    assert "sees 1 GPU(s) but could not compile and run a test kernel (OSError: libnvrtc.so.12" in detail
    assert "tinyvae[gpu12]" in detail and "tinyvae[gpu13]" in detail
    name, reason = tv.backend._choose("auto", "test")
    assert name in ("numba", "numpy") and "not cupy: cupy 14.0.0 sees 1 GPU(s)" in reason
    with pytest.raises(tv.backend.BackendError, match=r"--device gpu: backend 'cupy' is not available"):
        tv.backend._choose("gpu", "--device gpu")


def test_probe_refuses_no_device_and_a_wrong_answer(probe_with):
    assert probe_with(_fake_cupy(device_count=0)) == (False, "cupy 14.0.0 imports but finds no GPU")
    ok, detail = probe_with(_fake_cupy(kernel_result=(0.0, 0.0, 0.0, 0.0)))
    assert not ok and "returned [0.0, 0.0, 0.0, 0.0]" in detail


def test_a_cpu_request_never_imports_cupy(tmp_path):
    """With CuPy installed (here a stand-in package on the path that leaves a mark when imported),
    TINYVAE_BACKEND=cpu builds tensors without importing it; auto does import it (so the stand-in is found
    and the first check could fail)."""
    package, mark = tmp_path / "cupy", tmp_path / "cupy-was-imported"
    package.mkdir()
    (package / "__init__.py").write_text(
        f"open({str(mark)!r}, 'w').close()\nraise ImportError('the stand-in cupy of test_backend.py')\n"
    )
    code = "import sys, tinyvae as tv; tv.Tensor([1.0]) * 2.0; print('numba' in sys.modules)"
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    assert run_python(code, TINYVAE_BACKEND="cpu", PYTHONPATH=path) == "False"  # nor is the choice made yet
    assert not mark.exists()
    auto = run_python(
        "import tinyvae as tv; tv.Tensor([1.0]) * 2.0; print(tv.backend.info()['cupy'])",
        TINYVAE_BACKEND="auto",
        PYTHONPATH=path,
    )
    assert mark.exists() and "the stand-in cupy of test_backend.py" in auto


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_the_device_option_of_every_command(device):
    """`tinyvae COMMAND --device cpu|gpu` chooses the backend before the command runs, and says so."""
    result = subprocess.run(
        [sys.executable, "-m", "tinyvae", "info", "--device", device],
        env={**os.environ, "TINYVAE_BACKEND": "numpy"},  # the option wins over the environment
        capture_output=True,
        text=True,
        timeout=120,
    )
    if device == "cpu" or tv.backend.available()["cupy"][0]:
        assert result.returncode == 0, result.stderr
        assert f"reason: --device {device} asked for" in result.stdout
    else:
        assert result.returncode == 2
        assert "tinyvae: error: --device gpu: backend 'cupy' is not available" in result.stderr
        assert "tinyvae[gpu12]" in result.stderr
