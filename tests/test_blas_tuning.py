"""OpenBLAS kernel choice (tinyvae/blas_tuning.py): the CPU rule, the order of the rules, and that
``import tinyvae`` applies it before NumPy loads OpenBLAS."""

import json
import os
import subprocess
import sys

import pytest

from tinyvae import backend, blas_tuning


def cpuinfo(vendor="AuthenticAMD", family="25", flags="fpu sse2 avx2 fma avx512f avx512bw"):
    """Two processor blocks of /proc/cpuinfo, as Linux writes them (the rule reads the first)."""
    block = (
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 17\nflags\t\t: {flags}\n"
    )
    return block + "\n" + block.replace("processor\t: 0", "processor\t: 1")


ZEN4 = cpuinfo()


@pytest.fixture(autouse=True)
def keep_the_real_decision():
    """apply() records what it did in a module global; these tests must not leave a fake one behind."""
    saved = dict(blas_tuning.decision)
    yield
    blas_tuning.decision.clear()
    blas_tuning.decision.update(saved)


@pytest.mark.parametrize(
    "text, expected",
    [
        (ZEN4, "Haswell"),
        (cpuinfo(flags="fpu sse2 avx2 fma"), None),  # Zen 3: same family, no AVX-512
        (cpuinfo(family="26"), None),  # Zen 5: full-width AVX-512, not measured
        (
            cpuinfo(vendor="GenuineIntel", family="6"),
            None,
        ),  # Intel with AVX-512: SkylakeX kernels are its own
        (cpuinfo(flags="fpu avx512fp16 avx2"), None),  # a flag that merely starts with avx512f is not avx512f
        ("", None),  # no /proc/cpuinfo (not Linux)
    ],
)
def test_coretype_rule(text, expected):
    assert blas_tuning.coretype_for(text) == expected


def test_apply_sets_haswell_on_zen4_before_numpy():
    environ = {}
    result = blas_tuning.apply(environ, cpuinfo_text=ZEN4, numpy_loaded=False)
    assert environ == {"OPENBLAS_CORETYPE": "Haswell"}
    assert result["coretype"] == "Haswell" and "Zen 4" in result["reason"]
    assert blas_tuning.decision == result


def test_apply_keeps_a_coretype_the_user_set():
    environ = {"OPENBLAS_CORETYPE": "SkylakeX"}
    result = blas_tuning.apply(environ, cpuinfo_text=ZEN4, numpy_loaded=False)
    assert environ == {"OPENBLAS_CORETYPE": "SkylakeX"}
    assert result["coretype"] == "SkylakeX" and "set before tinyvae" in result["reason"]


def test_apply_can_be_switched_off():
    environ = {"TINYVAE_BLAS_TUNING": "0"}
    result = blas_tuning.apply(environ, cpuinfo_text=ZEN4, numpy_loaded=False)
    assert "OPENBLAS_CORETYPE" not in environ
    assert result["coretype"] is None and "TINYVAE_BLAS_TUNING=0" in result["reason"]


def test_apply_after_numpy_changes_nothing_and_says_how_to_get_the_kernels():
    environ = {}
    result = blas_tuning.apply(environ, cpuinfo_text=ZEN4, numpy_loaded=True)
    assert environ == {}
    assert result["coretype"] is None
    assert "OPENBLAS_CORETYPE=Haswell" in result["reason"] and "import tinyvae first" in result["reason"]


def test_apply_does_nothing_on_other_cpus():
    environ = {}
    result = blas_tuning.apply(
        environ, cpuinfo_text=cpuinfo(vendor="GenuineIntel", family="6"), numpy_loaded=False
    )
    assert environ == {} and result["coretype"] is None


def run_fresh(code, **environment):
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_CORETYPE"}
    env.update(environment)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


REPORT = (
    "import json, os, tinyvae\n"
    "print(json.dumps({'decision': tinyvae.blas_tuning.decision, 'env': os.environ.get('OPENBLAS_CORETYPE'),"
    " 'kernels': tinyvae.backend.openblas_kernels(), 'info': tinyvae.backend.info()}))"
)


def test_import_tinyvae_applies_the_rule_before_numpy_loads():
    """In a fresh interpreter, `import tinyvae` decides before NumPy is loaded, and OpenBLAS follows it."""
    report = run_fresh(REPORT)
    assert report["decision"]["numpy_was_loaded"] is False
    expected = blas_tuning.coretype_for(blas_tuning._read_cpuinfo())
    assert report["env"] == expected
    if expected is not None and report["kernels"] is not None:
        assert report["kernels"] == expected  # OpenBLAS really runs the kernels we asked for
    assert report["info"]["blas_tuning"] == report["decision"]["reason"]


def test_numpy_imported_first_is_reported():
    report = run_fresh("import numpy\n" + REPORT)
    assert report["decision"]["numpy_was_loaded"] is True
    assert report["env"] is None


def test_openblas_follows_a_coretype_set_in_the_environment():
    """OPENBLAS_CORETYPE set by the user reaches OpenBLAS, and info() reports the kernels in use."""
    if backend.openblas_kernels() is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS that reports its kernels")
    report = run_fresh(REPORT, OPENBLAS_CORETYPE="Haswell")
    assert report["kernels"] == "Haswell" == report["info"]["blas_kernels"]
    assert report["decision"]["reason"] == "OPENBLAS_CORETYPE was set before tinyvae"
