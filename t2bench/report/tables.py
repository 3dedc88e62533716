"""One published table: Markdown for people, CSV for spreadsheets, JSON (rows + provenance +
the raw per-item data) for code. Files are created, never replaced."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def diff_cell(d: dict | None) -> str:
    """A paired difference in points with its 95% CI, e.g. '+1.7 [-4.1, +7.5]'."""
    if not d:
        return ""
    return f"{100 * d['diff']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"


def diff_columns(base, other, *, iters: int, seed: int) -> dict[str, Any]:
    """The difference-to-base cells every ablation table shows (paired bootstrap over items),
    plus the raw ``diff`` record that the paragraphs read."""
    from t2bench.report.stats import paired_bootstrap

    d = paired_bootstrap(base, other, iters=iters, seed=seed)
    return {
        "Δ vs base (points) [95% CI]": diff_cell(d),
        "p": round(d["p_bootstrap"], 3),
        "W/L": f"{d['wins']}/{d['losses']}",
        "diff": d,
    }


@dataclass
class Table:
    """Rows of flat cells (``columns`` in order) plus what is needed to read and redo them."""

    name: str  # file stem, e.g. "table1-training-tasks"
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    caption: str = ""  # what was measured, how (n, splits, decoding)
    paragraph: str = ""  # what the numbers say about the paper's claims, and how sure we are
    data: dict[str, Any] = field(default_factory=dict)  # raw per-item results etc. (JSON only)
    plots: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.caption:
            lines += [self.caption, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for r in self.rows:
            lines.append("| " + " | ".join(fmt(r.get(c)) for c in self.columns) + " |")
        for p in self.plots:
            lines += ["", f"![{self.title}]({p})"]
        if self.paragraph:
            lines += ["", self.paragraph]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        w.writeheader()
        for r in self.rows:
            w.writerow({c: r.get(c, "") for c in self.columns})
        return buf.getvalue()

    def write(self, folder: Path, provenance: dict) -> list[Path]:
        """``<name>.md``, ``.csv`` and ``.json`` in ``folder``; refuses to replace a file."""
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "name": self.name,
            "title": self.title,
            "caption": self.caption,
            "columns": self.columns,
            "rows": self.rows,
            "paragraph": self.paragraph,
            "plots": self.plots,
            "data": self.data,
            "provenance": provenance,
        }
        texts = {
            ".md": self.markdown(),
            ".csv": self.csv(),
            ".json": json.dumps(payload, indent=2, default=str) + "\n",
        }
        paths = []
        for suffix, text in texts.items():
            path = folder / f"{self.name}{suffix}"
            with open(path, "x") as fh:  # "x": never overwrite a published table
                fh.write(text)
            paths.append(path)
        return paths


def figure(width: float = 6.0, height: float = 3.5):
    """A matplotlib Figure without pyplot's global state (safe in threads and headless)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig
