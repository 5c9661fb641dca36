"""Where the kernels sit: below the ops (nothing in kernels/ imports tinyvae.ops or anything above the
backend), the unrouted ones called by nothing in tinyvae/, every kernel subpackage installed, one routing
rule (kernels/_routing.py) and one compile helper (kernels/_jit.py)."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from backends import require_backend
from tinyvae.kernels import _jit, _routing, adam, relu

import tinyvae as tv

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
# What a kernel may import from tinyvae: the backend (array modules, numba's loader) and other kernels.
ALLOWED = ("tinyvae.backend", "tinyvae.kernels")


def upward_imports(source: str) -> list[str]:
    """The tinyvae modules that ``source`` imports beyond ALLOWED (at any depth: inside functions too), and
    any mention of the dotted name tinyvae.ops (as importlib.import_module would need)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from tinyvae import backend` imports tinyvae.backend; `from tinyvae.x import y`, tinyvae.x.
            names = [
                f"{node.module}.{a.name}" if node.module == "tinyvae" else node.module for a in node.names
            ]
        else:
            continue
        found += [n for n in names if n.split(".")[0] == "tinyvae" and not n.startswith(ALLOWED)]
    if "tinyvae.ops" in source:
        found.append("the text 'tinyvae.ops'")
    return found


def test_the_import_check_catches_an_import_of_the_ops():
    """The check below can fail: an import of the ops inside a function (as bernoulli_parts had), a
    `from tinyvae import ops`, the tensor module, and a dynamic import are all caught; the backend is not."""
    source = (
        "from tinyvae import backend\nfrom tinyvae.kernels._jit import compile_kernels\n"
        "def f():\n    from tinyvae.ops.elementwise import stable_sigmoid\n"
        "from tinyvae import ops\nimport tinyvae.tensor\n"
        "import importlib\nm = importlib.import_module('tinyvae.ops')\n"
    )
    assert sorted(upward_imports(source)) == [
        "the text 'tinyvae.ops'",
        "tinyvae.ops",
        "tinyvae.ops.elementwise",
        "tinyvae.tensor",
    ]


def test_kernels_import_nothing_from_the_ops_or_above():
    """Every .py file under kernels/ (unrouted/ included) imports from tinyvae only the backend and other
    kernels, so the ops can import the kernels and never the other way round."""
    files = sorted(KERNELS.rglob("*.py"))
    assert len(files) >= 10 and KERNELS / "unrouted" / "logsumexp.py" in files
    offenders = {str(f.relative_to(ROOT)): upward_imports(f.read_text()) for f in files}
    assert {f: names for f, names in offenders.items() if names} == {}


def test_no_module_of_tinyvae_calls_an_unrouted_kernel():
    """kernels/unrouted/ is what its name says: no import in tinyvae/ names it (a docstring may)."""
    for path in sorted((ROOT / "tinyvae").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [getattr(node, "module", None) or ""] + [alias.name for alias in node.names]
                assert not any("unrouted" in name for name in names), f"{path}:{node.lineno}"


def test_every_kernel_subpackage_is_installed():
    """setup.py maps kernels/ to tinyvae.kernels; a subfolder is installed only if setup.py lists it as a
    package. Each one is listed, and imports as a subpackage of tinyvae.kernels."""
    setup = (ROOT / "setup.py").read_text()
    subpackages = [p.parent.name for p in KERNELS.glob("*/__init__.py")]
    assert "unrouted" in subpackages
    for name in subpackages:
        assert f'"tinyvae.kernels.{name}"' in setup, f"setup.py does not install kernels/{name}/"
    import tinyvae.kernels
    from tinyvae.kernels import unrouted
    from tinyvae.kernels.unrouted import bernoulli, gaussian, logsumexp

    assert Path(unrouted.__file__).parent == Path(tinyvae.kernels.__file__).parent / "unrouted"
    assert all(m.__name__.startswith("tinyvae.kernels.unrouted.") for m in (bernoulli, gaussian, logsumexp))


def test_importing_the_unrouted_kernels_compiles_nothing():
    code = (
        "import sys\nfrom tinyvae.kernels.unrouted import bernoulli, gaussian, logsumexp\n"
        "assert 'numba' not in sys.modules\n"
        "assert not (bernoulli.COMPILE_SECONDS or gaussian.COMPILE_SECONDS or logsumexp.COMPILE_SECONDS)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------------------------------------------
# The one routing rule.

VERSIONS = {"numpy": "the NumPy version", "numba": "the numba version", "cupy": "the CuPy version"}


def test_pick_version_follows_the_backend_for_numpy_arrays():
    """NumPy arrays: numba under the numba backend, NumPy under the numpy backend; backend= overrides."""
    require_backend("numba")
    a = np.zeros(3)
    previous = tv.backend.current()
    try:
        for name in ("numba", "numpy"):
            tv.backend.use(name)
            assert (
                _routing.pick_version(VERSIONS, "k", (a,))
                == f"the {'numba' if name == 'numba' else 'NumPy'} version"
            )
            assert _routing.pick_version(VERSIONS, "k", (a,), backend="numpy") == "the NumPy version"
    finally:
        tv.backend.use(previous)


def test_pick_version_sends_cupy_arrays_to_cupy():
    require_backend("cupy")
    import cupy

    assert _routing.pick_version(VERSIONS, "k", (cupy.zeros(3),)) == "the CuPy version"


def test_pick_version_names_the_kernel_and_the_choices():
    with pytest.raises(
        ValueError, match=r"^my_kernel: backend 'fortran' is not one of \['cupy', 'numba', 'numpy'\]$"
    ):
        _routing.pick_version(VERSIONS, "my_kernel", (np.zeros(1),), backend="fortran")


def test_adam_update_all_uses_the_rule(monkeypatch):
    """adam_update_all (the variant that batches the numba calls) routes by the same rule: under the numpy
    backend it runs the NumPy version for each parameter."""
    calls = []
    monkeypatch.setitem(adam.IMPLEMENTATIONS, "numpy", lambda *args: calls.append(args[0].shape))
    previous = tv.backend.current()
    try:
        tv.backend.use("numpy")
        p = np.zeros((2, 3), np.float32)
        adam.adam_update_all([(p, p, p, p, None), (p[0], p[0], p[0], p[0], None)], 1e-3, 1e-8, 0.9, 0.999)
    finally:
        tv.backend.use(previous)
    assert calls == [(2, 3), (3,)]


# ---------------------------------------------------------------------------------------------------------
# The one compile helper.


def test_compile_kernels_without_numba_names_the_kernel(monkeypatch):
    """Where numba does not import, the numba version's first call says which kernel needed it and what to
    do, and records no compile time."""

    def no_numba():
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(tv.backend, "load_numba", no_numba)
    seconds = {}
    with pytest.raises(
        ImportError, match=r"^my_kernel: the numba version needs numba, which does not import "
    ):
        _jit.compile_kernels("my_kernel", [(lambda a: None, ["void(float64[::1])"])], seconds=seconds)
    assert seconds == {}
    with pytest.raises(ImportError, match="pip install numba, or run the NumPy version"):
        _jit.compile_kernels("my_kernel", [], seconds=seconds)


def test_compile_kernels_records_the_time_and_fills_in_numba():
    """After the first call of a numba version: its compile time is recorded under "numba", and a kernel
    file whose loop says numba.prange has its ``numba`` global set (it was None after import)."""
    require_backend("numba")
    import numba
    from tinyvae.kernels import im2col

    relu._numba_kernels()
    im2col._numba_kernels()
    assert relu.COMPILE_SECONDS["numba"] >= 0 and im2col.COMPILE_SECONDS["numba"] >= 0
    assert im2col.numba is numba
    assert not hasattr(relu, "numba")  # its loops name no numba.prange, so it declares no global
    assert not hasattr(adam, "numba")  # a plain loop since it compiles with NumPy's error model


def test_kernels_compile_one_dtype_at_a_time():
    """A float32 call compiles the float32 signatures only; float64 compiles on its own first call; a dtype
    with no signature is refused by name."""
    require_backend("numba")
    from tinyvae.kernels import _jit

    def copy(a, out):
        for i in range(a.shape[0]):
            out[i] = a[i]

    signatures = [f"void({t}[::1], {t}[::1])" for t in ("float32", "float64")]
    seconds = {}
    (kernel,) = _jit.compile_kernels("copy", [(copy, signatures)], seconds=seconds)
    assert kernel.compiled == {} and seconds == {"numba": 0.0}  # nothing compiled before the first call
    kernel(np.ones(2, np.float32), np.zeros(2, np.float32))
    assert sorted(kernel.compiled) == ["float32"] and seconds["numba"] > 0
    out = np.zeros(2)
    kernel(np.full(2, 3.0), out)
    assert sorted(kernel.compiled) == ["float32", "float64"] and out.tolist() == [3.0, 3.0]
    with pytest.raises(
        TypeError, match=r"copy: compiled for \['float32', 'float64'\] arrays, called with int64"
    ):
        kernel(np.ones(2, np.int64), np.zeros(2, np.int64))
