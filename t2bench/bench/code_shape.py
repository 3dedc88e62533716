"""The shape of the code base: its layers, its import graph and the counts a redesign moves.

Every ``t2bench`` module belongs to one layer (:data:`LAYERS`, lowest first; the longest
matching prefix decides). A module may import its own layer and the layers below it, never
one above; :data:`SEPARATE` packages of one layer never import each other; and no two modules
import each other, directly or round a loop. Imports inside functions count like any other.

``python -m t2bench.bench.code_shape [--root CHECKOUT] [--out results/bench]`` prints (and
writes) the counts: modules over 500 lines, functions over 80 lines, function-level imports of
t2bench modules, import cycles and layer violations; ``--root`` measures another checkout (an
older commit in a git worktree) with the same rules.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from t2bench.core.io import new_record

#: Layers, lowest first: (name, module prefixes). ``__main__`` modules are entry points and
#: belong to the top layer wherever they live.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        ("t2bench", "t2bench.errors", "t2bench.core", "t2bench.assets", "t2bench.configs"),
    ),
    (
        "models",
        (
            "t2bench.models",
            "t2bench.svf",
            "t2bench.generation",
            "t2bench.vlm.models",
            "t2bench.vlm.assemble",
        ),
    ),
    ("data", ("t2bench.tasks", "t2bench.data", "t2bench.classify_prompt")),
    (
        "methods",
        (
            "t2bench.train",
            "t2bench.dispatch",
            "t2bench.seal",
            "t2bench.vlm",
            "t2bench.backends",
            "t2bench.evaluate",
            "t2bench.demo",
        ),
    ),
    ("experiments", ("t2bench.bench", "t2bench.ablations")),
    ("reports", ("t2bench.report",)),
    ("cli", ("t2bench.cli", "t2bench._lmeval_hook")),
)
#: Packages of one layer that stay independent of each other (both directions).
SEPARATE: tuple[tuple[str, str], ...] = (("t2bench.train", "t2bench.dispatch"),)
BIG_MODULE_LINES = 500
BIG_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module
    line: int
    in_function: bool


def modules(root: Path) -> dict[str, Path]:
    """Module name -> file for every ``.py`` under ``<root>/t2bench``."""
    found = {}
    for path in sorted((root / "t2bench").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _resolve(known: dict[str, Path], module: str, name: str | None = None) -> str | None:
    """The t2bench module an import statement loads (``from pkg import mod`` loads ``pkg.mod``)."""
    if name and f"{module}.{name}" in known:
        return f"{module}.{name}"
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def _function_lines(tree: ast.AST) -> set[int]:
    """Line numbers of the statements inside function bodies."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for child in ast.walk(node):
                if hasattr(child, "lineno") and child is not node:
                    inside.add(child.lineno)
    return inside


def import_edges(root: Path) -> list[Edge]:
    """Every import of one t2bench module by another, at module level or inside a function."""
    known = modules(root)
    edges = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        in_function = _function_lines(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                mod = node.module or ""
                targets = (
                    [_resolve(known, mod, a.name) for a in node.names]
                    if mod.startswith("t2bench")
                    else []
                )
            elif isinstance(node, ast.Import):
                targets = [
                    _resolve(known, a.name) for a in node.names if a.name.startswith("t2bench")
                ]
            else:
                continue
            for target in dict.fromkeys(t for t in targets if t and t != name):
                edges.append(Edge(name, target, node.lineno, node.lineno in in_function))
    return edges


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of ``module`` (longest matching prefix; ``__main__``: the top)."""
    if module.endswith(".__main__"):
        return len(LAYERS) - 1
    best, index = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, index = len(p), i
    if index is None:
        raise KeyError(f"{module} is in no layer: add its package to LAYERS in {__name__}")
    return index


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_violations(edges: list[Edge]) -> list[str]:
    """Imports of a higher layer, or between :data:`SEPARATE` packages."""
    bad = []
    for e in edges:
        low, high = layer_of(e.source), layer_of(e.target)
        if high > low:
            bad.append(
                f"{e.source}:{e.line} ({LAYERS[low][0]}) imports {e.target} ({LAYERS[high][0]})"
            )
        for a, b in SEPARATE:
            for x, y in ((a, b), (b, a)):
                if _within(e.source, x) and _within(e.target, y):
                    bad.append(
                        f"{e.source}:{e.line} imports {e.target} ({x} and {y} stay separate)"
                    )
    return bad


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan's SCC)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def _function_sizes(tree: ast.AST) -> list[tuple[str, int]]:
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def shape(root: Path) -> dict:
    """The counts for ``root`` (a checkout): sizes, function-level imports, cycles, violations."""
    known = modules(root)
    edges = import_edges(root)
    lines = {name: len(path.read_text().splitlines()) for name, path in known.items()}
    functions = [
        (name, fn, n)
        for name, path in known.items()
        for fn, n in _function_sizes(ast.parse(path.read_text()))
    ]
    return {
        "modules": len(known),
        "lines": sum(lines.values()),
        f"modules_over_{BIG_MODULE_LINES}_lines": sorted(
            (m, n) for m, n in lines.items() if n > BIG_MODULE_LINES
        ),
        f"functions_over_{BIG_FUNCTION_LINES}_lines": sorted(
            (f"{m}.{fn}", n) for m, fn, n in functions if n > BIG_FUNCTION_LINES
        ),
        "function_level_imports": sum(e.in_function for e in edges),
        "import_cycles": cycles(edges),
        "layer_violations": layer_violations(edges),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m t2bench.bench.code_shape")
    p.add_argument("--root", default=".", help="the checkout to measure (default: .)")
    p.add_argument("--out", default=None, help="folder for a JSON record (e.g. results/bench)")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    counts = shape(root)
    for key, value in counts.items():
        print(f"{key}: {len(value) if isinstance(value, list) else value}")
    if args.out:
        from t2bench.core.provenance import git_commit, provenance

        record = {
            "root": str(root),
            "counts": counts,
            "provenance": provenance(measured_commit=git_commit(root)),
        }
        print(f"written: {new_record(Path(args.out), 'code-shape', record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
