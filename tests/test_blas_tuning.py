"""OpenBLAS kernel choice (tinyvae/blas_tuning.py): the CPU rule, the order of the rules, and who applies it,
each checked in a fresh interpreter: the ``tinyvae`` command does, before NumPy loads OpenBLAS; ``import
tinyvae`` does not (it loads nothing at all) unless ``TINYVAE_BLAS_TUNING=1``; ``TINYVAE_BLAS_TUNING=0`` turns
it off everywhere; an ``OPENBLAS_CORETYPE`` the user set always wins."""

import importlib.metadata
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
    """Run ``code`` in a fresh interpreter (no OPENBLAS_CORETYPE or TINYVAE_BLAS_TUNING inherited, unless
    given) and return the JSON it prints."""
    hidden = ("OPENBLAS_CORETYPE", "TINYVAE_BLAS_TUNING")
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    env.update(environment)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


# `import tinyvae`, then what it loaded and set, then (importing more) what it decided and what OpenBLAS runs.
IMPORT_REPORT = (
    "import json, os, sys\n"
    "environ_before = dict(os.environ)\n"
    "import tinyvae\n"
    "loaded = sorted(m for m in sys.modules if m == 'numpy' or m.startswith('tinyvae'))\n"
    "keys = {*environ_before, *os.environ}\n"
    "changed = sorted(k for k in keys if environ_before.get(k) != os.environ.get(k))\n"
    "from tinyvae import backend, blas_tuning\n"
    "print(json.dumps({'loaded': loaded, 'changed': changed, 'decision': blas_tuning.decision,"
    " 'env': os.environ.get('OPENBLAS_CORETYPE'), 'kernels': backend.openblas_kernels(),"
    " 'info': backend.info()}))"
)


def expected_here():
    """The core type the rule picks on this machine's CPU (None off Zen 4)."""
    return blas_tuning.coretype_for(blas_tuning._read_cpuinfo())


def test_import_tinyvae_loads_nothing_and_changes_nothing():
    """Plain `import tinyvae` imports no NumPy (not even tinyvae's own modules) and leaves the environment
    alone, so it chooses nothing for OpenBLAS; info() says how to ask for the choice."""
    report = run_fresh(IMPORT_REPORT)
    assert report["loaded"] == ["tinyvae"] and report["changed"] == []
    assert report["env"] is None
    assert "TINYVAE_BLAS_TUNING=1" in report["info"]["blas_tuning"]


def test_import_tinyvae_applies_the_rule_when_asked():
    """With TINYVAE_BLAS_TUNING=1, `import tinyvae` decides before NumPy is loaded, and OpenBLAS follows."""
    report = run_fresh(IMPORT_REPORT, TINYVAE_BLAS_TUNING="1")
    assert "numpy" not in report["loaded"] and report["decision"]["numpy_was_loaded"] is False
    assert report["env"] == expected_here()
    if report["env"] is not None and report["kernels"] is not None:
        assert report["kernels"] == report["env"]  # OpenBLAS really runs the kernels we asked for
    assert report["info"]["blas_tuning"] == report["decision"]["reason"]


def test_numpy_imported_first_is_reported():
    report = run_fresh("import numpy\n" + IMPORT_REPORT, TINYVAE_BLAS_TUNING="1")
    assert report["decision"]["numpy_was_loaded"] is True
    assert report["env"] is None


def test_openblas_follows_a_coretype_set_in_the_environment():
    """OPENBLAS_CORETYPE set by the user reaches OpenBLAS, and info() reports the kernels in use."""
    if backend.openblas_kernels() is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS that reports its kernels")
    report = run_fresh(IMPORT_REPORT, OPENBLAS_CORETYPE="Haswell", TINYVAE_BLAS_TUNING="1")
    assert report["kernels"] == "Haswell" == report["info"]["blas_kernels"]
    assert report["decision"]["reason"] == "OPENBLAS_CORETYPE was set before tinyvae"


# ---------------------------------------------------------------- the tinyvae command

# What the console script runs (setup.py: tinyvae = tinyvae.__main__:main), on the /proc/cpuinfo at {path}:
# whether NumPy was loaded before main() ran, then `tinyvae info`'s output and what OpenBLAS runs.
COMMAND_REPORT = (
    "import contextlib, io, json, os, sys\n"
    "from tinyvae.__main__ import main\n"
    "numpy_before_main = 'numpy' in sys.modules\n"
    "from tinyvae import blas_tuning\n"
    "blas_tuning._CPUINFO_PATH = {path!r}\n"
    "out = io.StringIO()\n"
    "with contextlib.redirect_stdout(out):\n"
    "    status = main(['info'])\n"
    "from tinyvae import backend\n"
    "print(json.dumps({{'numpy_before_main': numpy_before_main, 'status': status, 'info': out.getvalue(),"
    " 'decision': blas_tuning.decision, 'env': os.environ.get('OPENBLAS_CORETYPE'),"
    " 'kernels': backend.openblas_kernels()}}))"
)


def run_command(tmp_path, cpuinfo_text, **environment):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo_text)
    return run_fresh(COMMAND_REPORT.format(path=str(path)), **environment)


def test_the_console_script_runs_the_launcher():
    """The installed `tinyvae` command enters through tinyvae/__main__.py, whose import loads no NumPy."""
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="tinyvae")
    assert entry.value == "tinyvae.__main__:main"


def test_the_command_applies_the_rule_on_zen4(tmp_path):
    report = run_command(tmp_path, ZEN4)
    assert report["numpy_before_main"] is False and report["status"] == 0
    assert report["env"] == "Haswell" and report["decision"]["numpy_was_loaded"] is False
    assert "Zen 4" in report["decision"]["reason"] and report["decision"]["reason"] in report["info"]
    if report["kernels"] is not None:
        assert report["kernels"] == "Haswell"  # chosen before NumPy loaded OpenBLAS


def test_the_command_keeps_a_coretype_the_user_set(tmp_path):
    report = run_command(tmp_path, ZEN4, OPENBLAS_CORETYPE="Sandybridge")
    assert report["env"] == "Sandybridge"
    assert report["decision"]["reason"] == "OPENBLAS_CORETYPE was set before tinyvae"


def test_blas_tuning_0_turns_it_off_for_the_command_and_the_import(tmp_path):
    report = run_command(tmp_path, ZEN4, TINYVAE_BLAS_TUNING="0")
    assert report["env"] is None and "TINYVAE_BLAS_TUNING=0" in report["decision"]["reason"]
    report = run_fresh(IMPORT_REPORT, TINYVAE_BLAS_TUNING="0")
    assert report["loaded"] == ["tinyvae"] and report["changed"] == [] and report["env"] is None


def test_python_m_tinyvae_runs_the_same_command():
    env = {key: value for key, value in os.environ.items() if key != "TINYVAE_BLAS_TUNING"}
    result = subprocess.run(
        [sys.executable, "-m", "tinyvae", "info"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "blas_tuning" in result.stdout and "not applied" not in result.stdout
