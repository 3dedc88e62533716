"""A dispatch-accuracy run: every strategy's confusion matrix on the same prompts, each written
to its own files in a new run folder with a combined table, a grid plot and ``run.json``
(commit, base weights' sha256 hashed before any expert is composed, seed, the scored items'
``task:doc_id`` ids and their sha256, machine and wall time)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2bench.core.io import new_folder, results_path
from t2bench.core.provenance import provenance
from t2bench.core.tables import markdown_rows
from t2bench.dispatch.base import strategy_names
from t2bench.dispatch.confusion import (
    ConfusionMatrix,
    confusion,
    percent,
    to_csv,
    to_json,
    to_markdown,
)
from t2bench.dispatch.confusion_plots import plot, plot_grid
from t2bench.dispatch.routing_items import DEFAULT_TASKS, MBPP_HELD_OUT, task_prompts
from t2bench.dispatch.standalone import load_bound
from t2bench.errors import ConfigError


@dataclass
class StrategyResult:
    """One strategy's matrix, first-pass time and the dispatcher's own description."""

    strategy: str
    cm: ConfusionMatrix
    seconds: float
    describe: dict = field(default_factory=dict)

    @property
    def seconds_per_prompt(self) -> float:
        return self.seconds / self.cm.n


def new_run_folder(out_dir: str | Path) -> Path:
    """A new ``<out_dir>/confusion-<UTC stamp>/`` (``-1``, ``-2`` … when taken): a run never
    writes into an earlier run's folder."""
    return new_folder(out_dir, "confusion")


def _stem(strategy: str) -> str:
    """A file name for a spec such as ``cem:shots=5;population=8``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", strategy).strip("_") or "strategy"


def _write_new(path: Path, text: str) -> Path:
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(text)
    return path


def write_strategy(folder: Path, result: StrategyResult, **extra: Any) -> list[Path]:
    """``<strategy>.md/.csv/.json/.png`` in ``folder``; fails if any of them exists."""
    stem, title = _stem(result.strategy), f"dispatch={result.strategy}"
    timing = {
        "first_pass_seconds": result.seconds,
        "seconds_per_prompt": result.seconds_per_prompt,
    }
    md = to_markdown(result.cm, title) + (
        f"first pass: {result.seconds:.2f} s ({result.seconds_per_prompt:.4f} s per prompt)\n"
    )
    return [
        _write_new(folder / f"{stem}.md", md),
        _write_new(folder / f"{stem}.csv", to_csv(result.cm)),
        _write_new(
            folder / f"{stem}.json",
            to_json(
                result.cm,
                title,
                {"strategy": result.strategy, "dispatcher": result.describe, **timing},
                **extra,
            ),
        ),
        plot(result.cm, folder / f"{stem}.png", title),
    ]


def combined_markdown(results: Sequence[StrategyResult], info: Mapping[str, Any]) -> str:
    """Every strategy: a summary table, then each matrix."""
    lines = [
        "# Dispatch accuracy: true task category × chosen expert",
        "",
        f"tasks {', '.join(info.get('tasks', ()))}; {info.get('n_per_task')} docs per task "
        f"(seed {info.get('seed')}, MBPP task ids {MBPP_HELD_OUT.start}-{MBPP_HELD_OUT.stop - 1} only); "
        f"model {info.get('model', '?')}; experts {info.get('experts')}; "
        f"batch size {info.get('batch_size')}",
        "",
    ]
    rows = []
    for r in results:
        lo, hi = r.cm.wilson
        rows.append(
            [
                r.strategy,
                r.cm.n,
                percent(r.cm.accuracy),
                f"{percent(lo)} – {percent(hi)}",
                f"{r.seconds:.2f}",
                f"{r.seconds_per_prompt:.4f}",
            ]
        )
    head = ["strategy", "n", "accuracy", "95% Wilson CI", "first pass s", "s / prompt"]
    lines += markdown_rows(head, rows, right=(1, 2, 4, 5))
    lines += ["", "![confusion matrices](confusion.png)", ""]
    for r in results:
        lines.append(to_markdown(r.cm, f"dispatch={r.strategy}"))
    return "\n".join(lines)


def write_summary(
    folder: Path, results: Sequence[StrategyResult], info: Mapping[str, Any], **extra: Any
) -> list[Path]:
    """``confusion.md``, ``confusion.png`` (all strategies) and ``run.json`` in ``folder``."""

    run_json = {
        "arguments": dict(info),
        "results": {
            r.strategy: {
                "n": r.cm.n,
                "accuracy": r.cm.accuracy,
                "wilson95": list(r.cm.wilson),
                "first_pass_seconds": r.seconds,
                "seconds_per_prompt": r.seconds_per_prompt,
                "dispatcher": r.describe,
                "file": f"{_stem(r.strategy)}.json",
            }
            for r in results
        },
        "provenance": provenance(**extra),
    }
    return [
        _write_new(folder / "confusion.md", combined_markdown(results, info)),
        plot_grid({r.strategy: r.cm for r in results}, folder / "confusion.png"),
        _write_new(folder / "run.json", json.dumps(run_json, indent=2, default=str) + "\n"),
    ]


def _check_strategies(strategies: Sequence[str]) -> None:

    known = strategy_names()
    unknown = [s for s in strategies if s.partition(":")[0].strip().lower() not in known]
    if unknown:
        raise ConfigError(
            f"unknown dispatch strategy {', '.join(map(repr, unknown))}: use one of {', '.join(known)}"
        )
    if len(set(map(_stem, strategies))) != len(strategies):
        raise ConfigError(f"strategies {list(strategies)} repeat one another: list each once")


def run(
    strategies: Sequence[str] | str,
    n_per_task: int = 50,
    experts: str | list[str] | None = None,
    out_dir: str | Path | None = None,
    pretrained: str | None = None,
    seed: int = 0,
    batch_size: int = 16,
    tasks: Sequence[str] = DEFAULT_TASKS,
) -> Path:
    """Score each strategy on the same prompts with one loaded model; return the new folder.

    The folder is claimed before any work, so a clash fails at once; a run that fails leaves
    no empty folder behind.
    """
    out_dir = out_dir or results_path("dispatch")
    from t2bench.core.provenance import git_commit, items_sha256, weights_sha256

    commit = git_commit()  # the code that runs, read before anything can change the tree
    t0 = time.perf_counter()
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    strategies = list(strategies)
    if not strategies:
        raise ConfigError("no strategies given: pass e.g. --strategies prompt,label")
    _check_strategies(strategies)
    info: dict[str, Any] = {
        "strategies": strategies,
        "n_per_task": n_per_task,
        "experts": experts,
        "out_dir": str(out_dir),
        "pretrained": pretrained,
        "seed": seed,
        "batch_size": batch_size,
        "tasks": list(tasks),
    }
    folder = new_run_folder(out_dir)
    try:
        items = task_prompts(tasks, n_per_task, seed)
        results: list[StrategyResult] = []
        lm = None
        weights = None
        for strategy in strategies:
            bound = load_bound(
                strategy, pretrained=pretrained, experts=experts, batch_size=batch_size, lm=lm
            )
            lm = bound.lm
            info["model"] = lm.model_id
            # hashed once, before any strategy composes an expert into the weights
            weights = weights or weights_sha256(lm.model)
            try:
                cm, seconds = confusion(bound.dispatcher, items, batch_size, progress=True)
            finally:
                if bound.patcher is not None:
                    bound.patcher.restore()  # the next strategy decomposes the base weights
            results.append(StrategyResult(strategy, cm, seconds, bound.dispatcher.describe()))
        item_ids = [f"{it.task}:{it.doc_id}" for it in items]
        prov = {
            "commit": commit,
            "model_source": info.get("model"),
            "weights_sha256": weights,
            "data_split": "lm-eval evaluation docs (MBPP task ids 311-510)",
            "item_ids": item_ids,
            "items_sha256": items_sha256(item_ids),
            "seed": seed,
        }
        info["wall_seconds"] = round(time.perf_counter() - t0, 2)
        for r in results:
            write_strategy(folder, r, **prov, wall_seconds=info["wall_seconds"])
        write_summary(folder, results, info, **prov, wall_seconds=info["wall_seconds"])
    except BaseException:
        if not any(folder.iterdir()):
            folder.rmdir()
        raise
    return folder
