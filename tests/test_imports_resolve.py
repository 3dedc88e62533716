"""Every ``from t2bench.x import name`` in the package and its tests names something that
exists, including the imports inside functions that only run on the real model (a stale one
once reached CI's real-model session before any unit test noticed)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports():
    for path in sorted(
        [*ROOT.joinpath("t2bench").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py")]
    ):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").startswith("t2bench")
            ):
                for alias in node.names:
                    yield path.relative_to(ROOT), node.lineno, node.module, alias.name


def _resolves(module: str, name: str) -> bool:
    if hasattr(importlib.import_module(module), name):
        return True
    try:
        importlib.import_module(f"{module}.{name}")
    except ImportError:
        return False
    return True


def test_every_t2bench_import_names_something_that_exists():
    found = list(_imports())
    assert len(found) > 200  # the walk really saw the function-level imports
    missing = [f"{p}:{line} from {m} import {n}" for p, line, m, n in found if not _resolves(m, n)]
    assert not missing, "imports of names that do not exist:\n" + "\n".join(missing)
