"""Dispatch accuracy: how often a strategy picks the expert of a prompt's true category.

A confusion matrix, true label × chosen label, with accuracy, per-row recall and a 95% Wilson
interval, computed by running a strategy's first pass over :mod:`t2bench.dispatch.routing_items`,
and written as Markdown, CSV and JSON (the JSON with its provenance). Plots are in
:mod:`t2bench.dispatch.confusion_plots`, a whole run over several strategies in
:mod:`t2bench.dispatch.confusion_run`.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from t2bench.core.provenance import provenance
from t2bench.core.stats import wilson
from t2bench.core.tables import markdown_rows
from t2bench.dispatch.base import Choice, Dispatcher, DispatchRequest
from t2bench.dispatch.categories import LABELS, serves
from t2bench.dispatch.routing_items import PromptItem
from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert

COLUMNS = LABELS  # code, math, reasoning, other
MIXTURE = "mixture"
WILSON_Z = 1.959963984540054  # two-sided 95%


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


def percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_line(cm: ConfusionMatrix) -> str:
    lo, hi = cm.wilson
    return (
        f"n = {cm.n}, accuracy {cm.correct}/{cm.n} = {percent(cm.accuracy)} "
        f"(95% Wilson CI {percent(lo)} – {percent(hi)})"
    )


def to_markdown(cm: ConfusionMatrix, title: str) -> str:
    """A Markdown table (true labels down, chosen across) with recall and the summary line."""
    head = ["true \\ chosen", *cm.columns, "total", "recall"]
    recall = cm.recall
    rows = []
    for r, row in zip(cm.rows, cm.counts, strict=True):
        cells = [f"**{c}**" if col == r else str(c) for col, c in zip(cm.columns, row, strict=True)]
        rows.append([r, *cells, sum(row), percent(recall[r])])
    lines = [f"### {title}", "", *markdown_rows(head, rows, right=range(1, len(head)))]
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
