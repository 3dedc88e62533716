"""Dispatch accuracy: how often a strategy picks the expert of a prompt's true category.

A strategy is only as good as its routing, so each one is scored on the exact contexts that
lm-eval sends for held-out evaluation docs (few-shot examples included, as in a default
``lm_eval run``: no chat template, no system instruction, the default few-shot seed). The
result is a confusion matrix, true label × chosen label, with accuracy, per-row recall and a
95% Wilson interval, written as Markdown, CSV, JSON and a heatmap. The JSON files carry the
provenance: commit, base weights' sha256 (hashed before any expert is composed), seed, the
scored items' ``task:doc_id`` ids and their sha256, machine and wall time.

MBPP docs are restricted to task ids 311-510: ids 11-310 are the training and validation
pools of the code expert and the classifier (:mod:`t2bench.data.splits`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from t2bench.core.io import results_path, utc_stamp
from t2bench.core.provenance import provenance
from t2bench.core.stats import wilson
from t2bench.dispatch.base import Choice, Dispatcher, DispatchRequest, strategy_names
from t2bench.dispatch.labels import LABELS, serves
from t2bench.dispatch.standalone import load_bound
from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert
from t2bench.tasks import tasks_dir
from t2bench.tasks.code_exec import ENV_FLAG

__all__ = [
    "COLUMNS",
    "DEFAULT_TASKS",
    "MBPP_HELD_OUT",
    "TRUE_LABEL",
    "ConfusionMatrix",
    "PromptItem",
    "StrategyResult",
    "chosen_label",
    "confusion",
    "new_run_folder",
    "plot",
    "plot_grid",
    "run",
    "task_prompts",
    "to_csv",
    "to_json",
    "to_markdown",
    "true_label",
    "write_strategy",
    "write_summary",
]

TRUE_LABEL: dict[str, str] = {
    "gsm8k": "math",
    "minerva_math": "math",
    "humaneval": "code",
    "mbpp": "code",
    "arc_challenge": "reasoning",
    "arc_easy": "reasoning",
}
DEFAULT_TASKS = ("gsm8k", "minerva_math", "humaneval", "mbpp", "arc_challenge")
# MBPP task ids 11-310 train / validate the code expert and the classifier (data/splits.py).
MBPP_HELD_OUT = range(311, 511)
COLUMNS = LABELS  # code, math, reasoning, other
MIXTURE = "mixture"
WILSON_Z = 1.959963984540054  # two-sided 95%


def true_label(task_name: str) -> str:
    """The category of an lm-eval task: exact name, else the longest ``<known>_`` prefix."""
    if task_name in TRUE_LABEL:
        return TRUE_LABEL[task_name]
    for known in sorted(TRUE_LABEL, key=len, reverse=True):
        if task_name.startswith(known + "_"):
            return TRUE_LABEL[known]
    raise ConfigError(
        f"no true label for task {task_name!r}: known tasks (and their '<name>_…' subtasks) are "
        f"{', '.join(sorted(TRUE_LABEL))}; add it to t2bench.dispatch.confusion.TRUE_LABEL"
    )


# --------------------------------------------------------------------------- prompts


class PromptItem(NamedTuple):
    """One evaluation doc as the dispatcher sees it, with the label it should route to."""

    task: str  # the leaf lm-eval task (a subtask for groups), as lm-eval names its requests
    doc_id: int  # lm-eval's doc_id: the position in the task's evaluation docs
    text: str
    true: str


@contextlib.contextmanager
def _code_dataset_opt_in() -> Iterator[None]:
    """Let humaneval/mbpp load their docs: their loaders demand the code-execution opt-in.

    Nothing is executed here, only prompts are built, so the flag is set just while the
    tasks load and restored afterwards.
    """

    old = os.environ.get(ENV_FLAG)
    os.environ[ENV_FLAG] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_FLAG, None)
        else:
            os.environ[ENV_FLAG] = old


def _eligible(task_name: str, doc: Mapping[str, Any]) -> bool:
    if task_name == "mbpp" or task_name.startswith("mbpp_"):
        return int(doc["task_id"]) in MBPP_HELD_OUT
    return True


def _contexts(task: Any, wanted: set[int]) -> dict[int, str]:
    """lm-eval's context for each wanted doc_id, exactly as ``build_all_requests`` makes it.

    The default few-shot sampler draws from one seeded stream in doc order, so a doc's shots
    depend on the docs before it: their draws are replayed, in order, up to the last wanted
    doc (only the draws, as ``fewshot_context`` makes them: rendering every skipped context
    would cost ~10 ms a doc). The tests compare the result with ``build_all_requests``.
    """
    from lm_eval.api.samplers import FirstNSampler
    from lm_eval.defaults import DEFAULT_OTHER_SEED

    num_fewshot = task.get_config("num_fewshot") or 0
    task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)  # what simple_evaluate does by default
    stateful = num_fewshot > 0 and not isinstance(getattr(task, "sampler", None), FirstNSampler)
    last = max(wanted)
    out: dict[int, str] = {}
    for doc_id, doc in task.doc_iterator():
        if doc_id > last:
            break
        if doc_id not in wanted:
            if stateful:
                same_split = task.fewshot_cfg.split == task.config.test_split
                task.sampler.sample(n=num_fewshot, eval_doc=doc if same_split else None)
            continue
        ctx = task.fewshot_context(doc, num_fewshot=num_fewshot, gen_prefix=task.doc_to_prefix(doc))
        if not isinstance(ctx, str):
            raise ConfigError(
                f"task {task.config.task} builds several contexts per doc (multiple inputs); "
                "dispatch accuracy needs one prompt per doc: choose another task"
            )
        out[doc_id] = ctx
    return out


def task_prompts(
    tasks: Sequence[str] = DEFAULT_TASKS, n_per_task: int = 50, seed: int = 0
) -> list[PromptItem]:
    """``n_per_task`` seeded evaluation docs per task (a group samples across its subtasks).

    Each item's text is the context lm-eval would send for that doc; nothing is cached, so
    edits to the task YAMLs show up at once.
    """
    from lm_eval.tasks import TaskManager

    if n_per_task < 1:
        raise ConfigError(f"n_per_task must be at least 1 (got {n_per_task})")
    for name in tasks:
        true_label(name)  # fail on an unknown task before loading anything
    # Indexing lm-eval's own ~14k task YAMLs takes ~20 s; the offline folder holds (and
    # overrides) every task named here, so it alone suffices unless a task lives elsewhere.
    local = tasks_dir()
    defaults = not all((local / f"{name}.yaml").is_file() for name in tasks)
    manager = TaskManager(include_path=str(local), include_defaults=defaults)
    items: list[PromptItem] = []
    for name in tasks:
        with _code_dataset_opt_in():
            leaves = manager.load(name)["tasks"]
        pool = [
            (leaf, doc_id)
            for leaf, task in sorted(leaves.items())
            for doc_id, doc in task.doc_iterator()
            if _eligible(leaf, doc)
        ]
        if n_per_task > len(pool):
            raise ConfigError(
                f"task {name} has {len(pool)} eligible evaluation docs, fewer than n={n_per_task}: "
                "lower --n"
            )
        picked = random.Random(f"{seed}-{name}").sample(pool, n_per_task)
        by_leaf: dict[str, set[int]] = {}
        for leaf, doc_id in picked:
            by_leaf.setdefault(leaf, set()).add(doc_id)
        texts = {leaf: _contexts(leaves[leaf], ids) for leaf, ids in by_leaf.items()}
        items += [
            PromptItem(leaf, doc_id, texts[leaf][doc_id], true_label(leaf))
            for leaf, doc_id in sorted(picked)
        ]
    return items


def first_docs(task_name: str, n: int | None) -> list[PromptItem]:
    """The first ``n`` docs (all when None) of one lm-eval task with their contexts: the docs
    ``lm_eval --limit n`` evaluates, so a first pass here sees exactly the backend's prompts."""
    from lm_eval.tasks import TaskManager

    local = tasks_dir()
    manager = TaskManager(
        include_path=str(local), include_defaults=not (local / f"{task_name}.yaml").is_file()
    )
    with _code_dataset_opt_in():
        task = manager.load(task_name)["tasks"][task_name]
    ids = [doc_id for doc_id, _ in task.doc_iterator()]
    wanted = set(ids if n is None else ids[:n])
    texts = _contexts(task, wanted)
    label = true_label(task_name)
    return [PromptItem(task_name, d, texts[d], label) for d in sorted(wanted)]


# --------------------------------------------------------------------------- the matrix


def _row_order(labels: set[str]) -> tuple[str, ...]:
    return tuple(lab for lab in LABELS if lab in labels) + tuple(sorted(labels - set(LABELS)))


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (true label, chosen label); rows are the true labels present."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    records: tuple[dict, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_pairs(
        cls, pairs: Sequence[tuple[str, str]], records: Sequence[dict] = ()
    ) -> ConfusionMatrix:
        if not pairs:
            raise ConfigError("a confusion matrix needs at least one (true, chosen) pair")
        rows = _row_order({t for t, _ in pairs})
        chosen = {c for _, c in pairs}
        unknown = chosen - set(COLUMNS) - {MIXTURE}
        if unknown:
            raise ConfigError(
                f"chosen labels {sorted(unknown)} are not among {[*COLUMNS, MIXTURE]}: "
                "map choices with chosen_label()"
            )
        columns = COLUMNS + ((MIXTURE,) if MIXTURE in chosen else ())
        grid = [[0] * len(columns) for _ in rows]
        for t, c in pairs:
            grid[rows.index(t)][columns.index(c)] += 1
        return cls(rows, columns, tuple(map(tuple, grid)), tuple(records))

    def count(self, true: str, chosen: str) -> int:
        if true not in self.rows or chosen not in self.columns:
            return 0
        return self.counts[self.rows.index(true)][self.columns.index(chosen)]

    def row_total(self, true: str) -> int:
        return sum(self.counts[self.rows.index(true)])

    @property
    def n(self) -> int:
        return sum(map(sum, self.counts))

    @property
    def correct(self) -> int:
        return sum(self.count(r, r) for r in self.rows)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    @property
    def recall(self) -> dict[str, float]:
        return {r: self.count(r, r) / self.row_total(r) for r in self.rows}

    @property
    def wilson(self) -> tuple[float, float]:
        """95% Wilson score interval for accuracy (:func:`t2bench.core.stats.wilson`)."""

        return wilson(self.correct, self.n, z=WILSON_Z)

    def to_dict(self) -> dict:
        return {
            "rows": list(self.rows),
            "columns": list(self.columns),
            "counts": [list(r) for r in self.counts],
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "wilson95": list(self.wilson),
            "recall": self.recall,
            "records": list(self.records),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConfusionMatrix:
        return cls(
            tuple(d["rows"]),
            tuple(d["columns"]),
            tuple(tuple(int(x) for x in r) for r in d["counts"]),
            tuple(d.get("records", ())),
        )


def chosen_label(choice: Choice, experts_by_name: Mapping[str, Expert] | None = None) -> str:
    """The category a choice answers as: base → other, an expert → its label, else mixture."""
    expert = choice.expert
    if expert is None:
        return "other"
    label = next((lab for lab in COLUMNS if lab != "other" and serves(expert, lab)), None)
    if label is None and experts_by_name and choice.key in experts_by_name:
        known = experts_by_name[choice.key]
        label = next((lab for lab in COLUMNS if lab != "other" and serves(known, lab)), None)
    return label or MIXTURE


def confusion(
    dispatcher: Dispatcher,
    items: Sequence[PromptItem],
    batch_size: int = 16,
    *,
    experts_by_name: Mapping[str, Expert] | None = None,
    progress: bool = False,
) -> tuple[ConfusionMatrix, float]:
    """The matrix of ``dispatcher`` on ``items`` and the seconds its first pass took.

    Only ``choose`` is timed (tokenisation, generation or scoring inside it included).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1 (got {batch_size})")
    table = experts_by_name
    if table is None and dispatcher.ctx is not None:
        table = dispatcher.ctx.experts
    choices: list[Choice] = []
    seconds = 0.0
    bar = tqdm(total=len(items), desc=dispatcher.name, unit="prompt", disable=not progress)
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        requests = [DispatchRequest(it.text, it.task, it.doc_id) for it in batch]
        t0 = time.perf_counter()
        got = dispatcher.choose(requests)
        seconds += time.perf_counter() - t0
        if len(got) != len(batch):
            raise RuntimeError(
                f"dispatcher {dispatcher.name} returned {len(got)} choices for {len(batch)} requests"
            )
        choices += got
        bar.update(len(batch))
    bar.close()
    labels = [chosen_label(c, table) for c in choices]
    records = [
        {"task": it.task, "doc_id": it.doc_id, "true": it.true, "chosen": lab, "key": c.key}
        for it, c, lab in zip(items, choices, labels, strict=True)
    ]
    pairs = [(it.true, lab) for it, lab in zip(items, labels, strict=True)]
    return ConfusionMatrix.from_pairs(pairs, records), seconds


# --------------------------------------------------------------------------- writers


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_line(cm: ConfusionMatrix) -> str:
    lo, hi = cm.wilson
    return (
        f"n = {cm.n}, accuracy {cm.correct}/{cm.n} = {_pct(cm.accuracy)} "
        f"(95% Wilson CI {_pct(lo)} – {_pct(hi)})"
    )


def to_markdown(cm: ConfusionMatrix, title: str) -> str:
    """A Markdown table (true labels down, chosen across) with recall and the summary line."""
    head = ["true \\ chosen", *cm.columns, "total", "recall"]
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    recall = cm.recall
    for r, row in zip(cm.rows, cm.counts, strict=True):
        cells = [f"**{c}**" if col == r else str(c) for col, c in zip(cm.columns, row, strict=True)]
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {sum(row)} | {_pct(recall[r])} |")
    lines += ["", summary_line(cm), ""]
    return "\n".join(lines)


def to_csv(cm: ConfusionMatrix) -> str:
    """``true,<columns…>,total,recall``: one row per true label."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true", *cm.columns, "total", "recall"])
    recall = cm.recall
    for r, row in zip(cm.rows, cm.counts, strict=True):
        w.writerow([r, *row, sum(row), f"{recall[r]:.6f}"])
    return buf.getvalue()


def from_csv(text: str) -> ConfusionMatrix:
    """Read back :func:`to_csv` (records are not in the CSV)."""
    rows = list(csv.reader(io.StringIO(text)))
    columns = tuple(rows[0][1:-2])
    body = rows[1:]
    return ConfusionMatrix(
        tuple(r[0] for r in body),
        columns,
        tuple(tuple(int(x) for x in r[1 : 1 + len(columns)]) for r in body),
    )


def to_json(
    cm: ConfusionMatrix, title: str = "", meta: Mapping[str, Any] | None = None, **extra: Any
) -> str:
    """The matrix, its statistics and per-prompt choices, plus ``meta`` and provenance.

    ``extra`` goes into :func:`~t2bench.core.provenance.provenance` (model, split, seed).
    """

    payload = {
        "title": title,
        **dict(meta or {}),
        **cm.to_dict(),
        "provenance": provenance(**extra),
    }
    return json.dumps(payload, indent=2, default=str) + "\n"


def _figure_class():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            "plotting confusion matrices needs matplotlib: pip install matplotlib"
        ) from None
    return Figure, FigureCanvasAgg


def _draw(ax: Any, cm: ConfusionMatrix, title: str) -> Any:
    """Heatmap coloured by row fraction (recall on the diagonal), counts in the cells."""
    norm = [[c / max(1, sum(row)) for c in row] for row in cm.counts]
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cm.columns)), labels=list(cm.columns), rotation=30, ha="right")
    ax.set_yticks(range(len(cm.rows)), labels=list(cm.rows))
    ax.set_xlabel("chosen")
    ax.set_ylabel("true")
    for i, row in enumerate(cm.counts):
        for j, c in enumerate(row):
            ax.text(
                j,
                i,
                str(c),
                ha="center",
                va="center",
                color="white" if norm[i][j] > 0.6 else "black",
                fontsize=9,
            )
    lo, hi = cm.wilson
    ax.set_title(
        f"{title}\naccuracy {_pct(cm.accuracy)} [{_pct(lo)}, {_pct(hi)}], n={cm.n}", fontsize=9
    )
    return image


def _save(fig: Any, canvas_cls: Any, path: Path) -> Path:
    canvas_cls(fig)
    with open(path, "xb") as fh:  # never replace an existing plot
        fig.savefig(fh, format="png", dpi=150)
    return path


def plot(cm: ConfusionMatrix, path: str | Path, title: str) -> Path:
    """One matrix as a PNG heatmap (Agg canvas, so no display and no global backend change)."""
    Figure, Canvas = _figure_class()
    fig = Figure(
        figsize=(1.0 * len(cm.columns) + 2.4, 0.7 * len(cm.rows) + 2.2), layout="constrained"
    )
    ax = fig.add_subplot()
    image = _draw(ax, cm, title)
    fig.colorbar(image, ax=ax, label="fraction of row")
    return _save(fig, Canvas, Path(path))


def plot_grid(matrices: Mapping[str, ConfusionMatrix], path: str | Path) -> Path:
    """All strategies side by side, on one colour scale, for comparison at a glance."""
    if not matrices:
        raise ConfigError("plot_grid needs at least one confusion matrix")
    Figure, Canvas = _figure_class()
    k = len(matrices)
    width = max(len(cm.columns) for cm in matrices.values())
    height = max(len(cm.rows) for cm in matrices.values())
    fig = Figure(figsize=(k * (1.0 * width + 1.6) + 1.2, 0.7 * height + 2.4), layout="constrained")
    axes = fig.subplots(1, k, squeeze=False)[0]
    image = None
    for i, (ax, (name, cm)) in enumerate(zip(axes, matrices.items(), strict=True)):
        image = _draw(ax, cm, name)
        if i:
            ax.set_ylabel("")
    fig.colorbar(image, ax=list(axes), label="fraction of row", shrink=0.9)
    return _save(fig, Canvas, Path(path))


# --------------------------------------------------------------------------- a run


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


def new_run_folder(out_dir: str | Path, stamp: str | None = None) -> Path:
    """Create ``<out_dir>/confusion-<UTC stamp>/``; an existing one is an error, never reused."""
    folder = Path(out_dir) / f"confusion-{stamp or utc_stamp()}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError:
        raise FileExistsError(
            f"{folder} already exists and results are never overwritten: start the run again "
            "(a new timestamp) or pass another --out"
        ) from None
    return folder


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
        "| strategy | n | accuracy | 95% Wilson CI | first pass s | s / prompt |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in results:
        lo, hi = r.cm.wilson
        lines.append(
            f"| {r.strategy} | {r.cm.n} | {_pct(r.cm.accuracy)} | {_pct(lo)} – {_pct(hi)} | "
            f"{r.seconds:.2f} | {r.seconds_per_prompt:.4f} |"
        )
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
