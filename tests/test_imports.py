"""The import graph of the library: no module imports itself back through others, the engine's bottom
(tinyvae/autodiff.py) imports nothing above it, and the kernels sit below the ops.

The graph is read from the source with ``ast``, every import statement counted wherever it sits (at the top of
a module or inside a function: an import inside a function is the same dependency, paid on each call). An
import names a module: ``from tinyvae.ops.shape import stack`` is an edge to ``tinyvae.ops.shape``, ``from
tinyvae import nn`` one to ``tinyvae.nn``, ``import tinyvae`` one to the package ``tinyvae`` itself. Importing
``tinyvae.ops.shape`` also runs ``tinyvae/ops/__init__.py`` first, but Python has put the package in
``sys.modules`` before it runs the submodule, so that implicit step cannot close a circle and is not an edge.

``python tests/test_imports.py`` prints the graph as an adjacency list.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where each module's source lives: tinyvae/ is the package, kernels/ is installed as tinyvae.kernels.
SOURCE_FOLDERS = {"tinyvae": ROOT / "tinyvae", "tinyvae.kernels": ROOT / "kernels"}


def library_modules():
    """{dotted module name: path} for every .py file of the library."""
    modules = {}
    for package, folder in SOURCE_FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_modules(name, source, known, is_package=False):
    """The modules of ``known`` that ``source`` (the text of module ``name``) imports, anywhere in it."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from . import x`, `from ..ops import y`
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from a import b` imports a.b if that is a module, else a
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif (
            isinstance(node, ast.Call)  # importlib.import_module("tinyvae.x") with a literal name
            and getattr(node.func, "attr", None) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(node.args[0].value)
    return {module for module in found if module in known and module != name}


def import_graph(sources=None):
    """{module: the library modules it imports}; ``sources`` ({name: text}) replaces reading the files."""
    if sources is None:
        sources = {name: path.read_text() for name, path in library_modules().items()}
        packages = {name for name, path in library_modules().items() if path.name == "__init__.py"}
    else:
        packages = set()
    return {
        name: imported_modules(name, text, set(sources), name in packages) for name, text in sources.items()
    }


def cycles(graph):
    """The import circles of ``graph``: each a list of modules, the first repeated at the end."""
    found, done = [], set()
    for start in sorted(graph):
        stack, on_path = [(start, iter(sorted(graph[start])))], [start]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.pop()
                done.add(node)
            elif child in on_path:
                found.append(on_path[on_path.index(child) :] + [child])
            elif child not in done:
                stack.append((child, iter(sorted(graph[child]))))
                on_path.append(child)
    return found


def describe(graph):
    """One line per module that imports others: ``tensor -> autodiff, backend, ops``."""

    def short(module):
        return module.removeprefix("tinyvae.") if module != "tinyvae" else "tinyvae"

    return "\n".join(
        f"{short(name)} -> {', '.join(sorted(map(short, graph[name])))}"
        for name in sorted(graph)
        if graph[name]
    )


# ---------------------------------------------------------------- the checks can fail


def test_a_circle_through_a_function_level_import_is_found():
    """The reader counts an import inside a function, a relative import and `from package import module`;
    the search finds the circle they make (and finds none once it is broken)."""
    sources = {
        "tinyvae.a": "from tinyvae import b\n",
        "tinyvae.b": "from .c import thing\n",
        "tinyvae.c": "def f():\n    import tinyvae.a\n",
        "tinyvae.d": "import tinyvae.c\n",
    }
    graph = import_graph(sources)
    assert graph == {
        "tinyvae.a": {"tinyvae.b"},
        "tinyvae.b": {"tinyvae.c"},
        "tinyvae.c": {"tinyvae.a"},
        "tinyvae.d": {"tinyvae.c"},
    }
    assert cycles(graph) == [["tinyvae.a", "tinyvae.b", "tinyvae.c", "tinyvae.a"]]
    sources["tinyvae.c"] = "def f():\n    import numpy\n"
    assert cycles(import_graph(sources)) == []


# ---------------------------------------------------------------- the library


def test_the_reader_sees_the_library():
    graph = import_graph()
    assert {"tinyvae", "tinyvae.tensor", "tinyvae.autodiff", "tinyvae.ops.elementwise"} <= set(graph)
    assert "tinyvae.kernels.codebook" in graph and "tinyvae.autodiff" in graph["tinyvae.ops.elementwise"]


def test_no_import_circle_among_the_library_modules():
    graph = import_graph()
    found = cycles(graph)
    assert found == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_engine_bottom_imports_nothing_from_tinyvae():
    """autodiff.py (Function, Context, the backward walk) is what everything else builds on; the Tensor class
    it needs is handed to it by tensor.py (autodiff.use_tensor_class), never imported, even inside a
    function (Function.apply runs on every op)."""
    assert import_graph()["tinyvae.autodiff"] == set()


def test_kernels_import_nothing_from_the_ops():
    """kernels/ sits below tinyvae.ops: the ops call the kernels, and a kernel has its own NumPy reference
    rather than borrowing an op's. (The last such import, kernels/bernoulli_parts.py taking stable_sigmoid
    from ops/elementwise.py, is being removed by the kernels rewrite; this fails only while it remains.)"""
    graph = import_graph()
    upward = {
        kernel: sorted(m for m in imported if m == "tinyvae.ops" or m.startswith("tinyvae.ops."))
        for kernel, imported in graph.items()
        if kernel.startswith("tinyvae.kernels")
    }
    assert {kernel: ops for kernel, ops in upward.items() if ops} == {}


# ---------------------------------------------------------------- importing one module alone works

# Each runs in a fresh interpreter that imports only the module named first, then uses what it exports: the
# engine needs no import order (tensor.py brings in the ops its operators call; F brings in Tensor).
ALONE = {
    "tinyvae.tensor": "from tinyvae.tensor import Tensor\nv = (Tensor([1.0, 2.0]) * 2 + 1).sum().item()",
    "tinyvae.functional": "import tinyvae.functional as F\nimport numpy\n"
    "v = F.stack([numpy.ones(2), numpy.zeros(2)]).sum().item()",
    "tinyvae.ops": "from tinyvae import ops\nfrom tinyvae.tensor import Tensor\n"
    "v = ops.add(Tensor([1.0]), 2).item()",
    "tinyvae.nn": "from tinyvae import nn\nimport numpy\n"
    "layer = nn.Linear(2, 1, rng=numpy.random.default_rng(0))\n"
    "v = layer(numpy.ones((1, 2), dtype=numpy.float32)).shape[1]",
    "tinyvae.gradcheck": "from tinyvae.gradcheck import gradcheck\nimport numpy, tinyvae as tv\n"
    "x = tv.Tensor(numpy.ones(2), requires_grad=True)\nv = tv.gradcheck(lambda t: t * t, [x])",
    # tv.gradcheck as the first use of the package after the submodule was imported (the package's
    # attribute is then the module, which is callable for this reason)
    "tinyvae.gradcheck first": "from tinyvae.gradcheck import GradcheckError\nimport tinyvae as tv\n"
    "import tinyvae.functional as F\nimport numpy\n"
    "x = F.stack([numpy.ones(2, dtype=numpy.float64)])\nx.requires_grad = True\n"
    "v = tv.gradcheck(lambda t: (t * t).sum(), [x])",
}


@pytest.mark.parametrize("module", sorted(ALONE))
def test_a_module_imported_alone_works(module):
    code = ALONE[module] + "\nprint(v)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


if __name__ == "__main__":
    graph = import_graph()
    print(describe(graph))
    print("circles:", cycles(graph) or "none")
