"""The README's gradient table stays in step with the code: every op class has a row, and every row
points at a file, class and test that exist."""

import importlib
import inspect
import pathlib
import re

from tinyvae.autodiff import Function

ROOT = pathlib.Path(__file__).resolve().parents[1]
OP_MODULES = [
    "elementwise",
    "reduce",
    "linalg",
    "shape",
    "gaussian",
    "likelihood",
    "quantize",
    "attention",
    "conv",
]
ROW = re.compile(r"^\| `[^|]+` \| [^|]+ \| `ops/(\w+)\.py` `(\w+)` \| `(tests/[\w/]+\.py)` \|$")


def gradient_table_rows():
    return [
        ROW.match(line).groups() for line in (ROOT / "README.md").read_text().splitlines() if ROW.match(line)
    ]


def op_classes():
    for name in OP_MODULES:
        module = importlib.import_module(f"tinyvae.ops.{name}")
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Function) and cls is not Function and cls.__module__ == module.__name__:
                yield name, cls_name


def test_every_op_class_has_a_row():
    """Each Function subclass in tinyvae/ops appears in the table with its own file."""
    rows = {(module, cls) for module, cls, _ in gradient_table_rows()}
    missing = sorted(set(op_classes()) - rows)
    assert not missing, f"ops without a row in README.md's gradient table: {missing}"


def test_every_row_points_at_code_and_tests_that_exist():
    """Each row's backward class exists in the named file, and its test file exists."""
    rows = gradient_table_rows()
    assert len(rows) >= 30
    for module, cls, test_file in rows:
        assert hasattr(importlib.import_module(f"tinyvae.ops.{module}"), cls), (module, cls)
        assert (ROOT / test_file).is_file(), test_file


def test_ci_runs_the_readme_commands():
    """.ci/run installs and tests exactly as the README's second command says."""
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    for command in ('pip install -e ".[test]"', "python -m pytest"):
        assert command in readme and command in ci
