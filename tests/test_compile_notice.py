"""A first run compiles the numba kernels inside its first step; the `tinyvae` command says so once, when the
compiling has taken NOTICE_AFTER_SECONDS, so a quiet second or two never looks like a hang."""

import os
import subprocess
import sys
import textwrap

import numpy
import pytest
from tinyvae.kernels import _jit

from tinyvae.backend import available

pytestmark = pytest.mark.skipif(not available()["numba"][0], reason="numba is not installed")


def _double(values, out):
    for i in range(values.shape[0]):
        out[i] = 2.0 * values[i]


@pytest.fixture
def listening(monkeypatch):
    """Notices go to a list; this process's compile time and the told flag start from zero."""
    heard = []
    monkeypatch.setattr(_jit, "notice", heard.append)
    monkeypatch.setattr(_jit, "_compiling", {"seconds": 0.0, "noticed": False})
    return heard


def _compile_once(seconds):
    """Build the kernel and call it: kernels compile (per dtype) on their first call."""
    (kernel,) = _jit.compile_kernels("test", [(_double, ["void(float64[:], float64[:])"])], seconds=seconds)
    kernel(numpy.zeros(3), numpy.zeros(3))


def test_the_notice_comes_once_when_compiling_takes_long_enough(listening, monkeypatch):
    monkeypatch.setattr(_jit, "NOTICE_AFTER_SECONDS", 0.0)
    seconds = {}
    _compile_once(seconds)
    _compile_once(seconds)
    assert listening == [_jit.COMPILE_NOTICE]
    assert _jit._compiling["seconds"] >= seconds["numba"] > 0


def test_no_notice_for_a_quick_compile_or_without_a_listener(listening, monkeypatch):
    monkeypatch.setattr(_jit, "NOTICE_AFTER_SECONDS", 3600.0)
    _compile_once({})
    assert listening == []
    monkeypatch.setattr(_jit, "NOTICE_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(_jit, "notice", None)
    _compile_once({})  # nobody listening: nothing to call, and no error
    assert _jit._compiling["noticed"] is False


def test_the_command_prints_it_on_a_cold_kernel_cache(tmp_path):
    """`tinyvae train` with an empty numba cache prints the notice on stderr, once (the threshold is set to
    0 here so that a fast machine's compile still crosses it)."""
    code = textwrap.dedent(
        f"""
        import sys
        from tinyvae import cli
        from tinyvae.kernels import _jit
        _jit.NOTICE_AFTER_SECONDS = 0.0
        sys.exit(cli.main(["train", "--epochs", "1", "--limit", "256", "--no-plots", "--no-progress",
                           "--out", {str(tmp_path / "run")!r}]))
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), "TINYVAE_BACKEND": "numba"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(_jit.COMPILE_NOTICE) == 1, result.stderr
