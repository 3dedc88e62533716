"""The dependency direction: lower layers never import higher ones, the separate packages of a
layer never import each other, and no import cycle exists (``t2bench.bench.code_shape``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2bench.bench.code_shape import cycles, import_edges, layer_of, layer_violations, shape

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_has_no_upward_import_and_no_cycle():
    edges = import_edges(ROOT)
    assert len(edges) > 300 and any(e.in_function for e in edges)  # the walk saw them all
    assert layer_violations(edges) == []
    assert cycles(edges) == []


def _checkout(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"t2bench/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_an_upward_import_inside_a_function_is_a_violation(tmp_path):
    root = _checkout(
        tmp_path,
        {
            "t2bench/svf/__init__.py": "",
            "t2bench/svf/math.py": "def f():\n    from t2bench.cli import main\n    return main\n",
            "t2bench/cli.py": "from t2bench.svf import math\n",
        },
    )
    edges = import_edges(root)
    assert [
        (e.source, e.target, e.in_function) for e in edges if e.source == "t2bench.svf.math"
    ] == [("t2bench.svf.math", "t2bench.cli", True)]
    (bad,) = layer_violations(edges)
    assert bad.startswith("t2bench.svf.math:2 (models) imports t2bench.cli (cli)")
    assert cycles(edges) == [["t2bench.cli", "t2bench.svf.math"]]
    counts = shape(root)
    assert counts["function_level_imports"] == 1 and len(counts["import_cycles"]) == 1


def test_separate_packages_of_one_layer_do_not_import_each_other(tmp_path):
    root = _checkout(
        tmp_path,
        {
            "t2bench/dispatch/__init__.py": "from t2bench.train import loop\n",
            "t2bench/train/__init__.py": "",
            "t2bench/train/loop.py": "",
            "t2bench/seal/__init__.py": "from t2bench.train import loop\n",
        },
    )
    bad = layer_violations(import_edges(root))
    assert len(bad) == 1 and "(t2bench.dispatch and t2bench.train stay separate)" in bad[0]


def test_every_module_has_a_layer_and_entry_points_are_on_top():
    assert layer_of("t2bench.core.io") == 0 < layer_of("t2bench.svf.expert")
    assert layer_of("t2bench.vlm.models") < layer_of("t2bench.vlm.pretrain")  # longest prefix
    assert layer_of("t2bench.train.__main__") == layer_of("t2bench.cli")
    with pytest.raises(KeyError, match="add its package to LAYERS"):
        layer_of("elsewhere.module")


def test_library_code_names_results_folders_only_through_the_results_root():
    """Default output folders come from ``core.io.results_path`` ($T2BENCH_RESULTS moves them
    all); a literal ``"results/…"`` path in library code would not move."""
    import ast

    literal = []
    for path in sorted((ROOT / "t2bench").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == "t2bench/core/io.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("results/")
                and id(node) not in docstrings
            ):
                literal.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert literal == []
