"""One published table: Markdown for people, CSV for spreadsheets, JSON (rows + provenance +
the raw per-item data) for code. Files are created, never replaced.

Before a table is written it must prove what it claims:
- it states its power (n and minimum detectable difference per task), and where a difference
  it shows is smaller than that, its Markdown says so instead of letting rows be ranked;
- a row that claims an adapter (SVF expert, mixture, LoRA, IA3) carries the record that the
  adapter was applied (``adapter_claim``), and a row whose record says otherwise is refused;
- it is not published from a dirty checkout unless the caller allows it explicitly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2bench.core.io import write_new
from t2bench.errors import T2BenchError


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


def diff_columns(base, other, *, iters: int, seed: int, clusters=None) -> dict[str, Any]:
    """The difference-to-base cells every ablation table shows (paired over items: Newcombe's
    interval and McNemar's exact p for 0/1 scores, a bootstrap for graded ones; with
    ``clusters``, one id per item, a bootstrap over whole clusters), plus the raw ``diff``
    record that the paragraphs read."""
    from t2bench.core.stats import clustered_difference, paired_difference

    d = (
        paired_difference(base, other, iters=iters, seed=seed)
        if clusters is None
        else clustered_difference(base, other, clusters, iters=iters, seed=seed)
    )
    return {
        "Δ vs base (points) [95% CI]": diff_cell(d),
        "p": round(d["p"], 3),
        "W/L": f"{d['wins']}/{d['losses']}",
        "diff": d,
    }


class UnappliedAdapterError(T2BenchError, ValueError):
    """A row claims an adapter whose evaluation record says it was never applied."""


class UnpoweredTableError(T2BenchError, ValueError):
    """A table states no n and minimum detectable difference."""


class DirtyCheckoutError(T2BenchError, RuntimeError):
    """A table would be published from a checkout with uncommitted changes."""


ADAPTER_KEY = "adapter_claim"


def check_clean_checkout(allow_dirty: bool = False) -> str:
    """The commit tables will be credited to; refuses a dirty checkout before any work starts
    (a long run would otherwise only be refused when its first table is written)."""
    from t2bench.core.provenance import git_commit

    commit = git_commit()
    if commit.endswith("+dirty") and not allow_dirty:
        raise DirtyCheckoutError(
            f"the checkout has uncommitted changes ({commit}): published tables must come "
            "from a commit. Commit first, or pass --allow-dirty (recorded in every table)"
        )
    return commit


def adapter_claim(kind: str, record: dict | None) -> dict:
    """What a row claiming an adapter of ``kind`` (svf, mixture, lora, ia3, ...) stores as proof.

    ``record`` is the evaluation's record: an lm-eval run's ``t2`` summary (``weight_compositions``
    counts SVF compositions, ``peft_merged`` says a peft adapter was merged) or a held-out run's
    ``applied`` entry. Anything else counts as not applied.
    """
    record = record or {}
    t2 = record.get("t2", record)
    if "applied" in record:
        applied = bool(record["applied"])
        evidence = record.get("applied_evidence", f"applied={applied}")
    elif kind in ("svf", "mixture"):
        n = int(t2.get("weight_compositions") or 0)
        applied, evidence = n > 0, f"weight_compositions={n}"
    else:
        merged = bool(t2.get("peft_merged"))
        applied, evidence = merged, f"peft_merged={merged}"
    return {"kind": kind, "applied": applied, "evidence": evidence}


def check_adapters(rows: list[dict]) -> None:
    bad = [
        f"{r.get('variant', r.get('run', '?'))!r} ({r[ADAPTER_KEY]['evidence']})"
        for r in rows
        if ADAPTER_KEY in r and not r[ADAPTER_KEY]["applied"]
    ]
    if bad:
        raise UnappliedAdapterError(
            "rows claim an adapter that their evaluation never applied: "
            + "; ".join(bad)
            + ". Pass the expert with dispatch=fixed:<name> (or the peft adapter) and rerun"
        )


def power_line(power: list[dict]) -> str:
    """'n and minimum detectable difference' sentence of a table."""
    if not power:
        return ""
    a, pw = power[0]["alpha"], power[0]["power"]
    parts = [
        f"{p['label']}: n = {p['n']:,}, base {p['p_base']:.3f}, MDD {100 * p['mdd']:.1f} points"
        if p["n"] > 0
        else f"{p['label']}: no scores compared (n = 0), so no difference is detectable"
        for p in power
    ]
    return (
        f"**Power.** Minimum detectable difference (MDD: two-sided α = {a}, power {pw:.0%}, "
        "independent errors at the base accuracy; pairing only helps) — " + "; ".join(parts) + "."
    )


def undetectable_note(rows: list[dict], power: list[dict]) -> str:
    """A sentence for tables showing differences smaller than their MDD: those are not ranked."""
    if not power:
        return ""
    mdd = min(p["mdd"] for p in power)
    small = [r for r in rows if isinstance(r.get("diff"), dict) and abs(r["diff"]["diff"]) < mdd]
    if not small:
        return ""
    return (
        f"**Not ranked.** {len(small)} of the differences shown are smaller than the smallest "
        f"MDD of this table ({100 * mdd:.1f} points): at this n they cannot be told from noise, "
        "so this table does not rank the methods they compare."
    )


def markdown_rows(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = ()
) -> list[str]:
    """A Markdown table as lines: the header, its rule (columns whose index is in ``right``
    aligned right) and one line per row of already formatted cells. Every table the project
    writes goes through here."""
    right = set(right)
    rule = "".join("---:|" if i in right else "---|" for i in range(len(columns)))
    lines = ["| " + " | ".join(columns) + " |", "|" + rule]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns: {row!r}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return lines


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
    power: list[dict] = field(default_factory=list)  # stats.power_record per task

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.caption:
            lines += [self.caption, ""]
        if self.power:
            lines += [power_line(self.power), ""]
        lines += markdown_rows(
            self.columns, ([fmt(r.get(c)) for c in self.columns] for r in self.rows)
        )
        for p in self.plots:
            lines += ["", f"![{self.title}]({p})"]
        note = undetectable_note(self.rows, self.power)
        if self.paragraph or note:
            lines += ["", " ".join(x for x in (self.paragraph, note) if x)]
        return "\n".join(lines) + "\n"

    def check(self, provenance: dict, *, allow_dirty: bool = False) -> None:
        """Refuse to publish a table that cannot prove what it claims (see the module doc)."""
        if not self.power:
            raise UnpoweredTableError(
                f"table {self.name} states no power: set Table.power to a "
                "report.stats.power_record per task (n and minimum detectable difference)"
            )
        check_adapters(self.rows)
        if str(provenance.get("commit", "")).endswith("+dirty") and not allow_dirty:
            raise DirtyCheckoutError(
                f"table {self.name}: the checkout has uncommitted changes "
                f"(commit {provenance.get('commit')}); commit them first, or pass "
                "--allow-dirty to publish anyway (recorded in the provenance)"
            )

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        w.writeheader()
        for r in self.rows:
            w.writerow({c: r.get(c, "") for c in self.columns})
        return buf.getvalue()

    def write(self, folder: Path, provenance: dict, *, allow_dirty: bool = False) -> list[Path]:
        """``<name>.md``, ``.csv`` and ``.json`` in ``folder``; refuses to replace a file, and
        refuses a table that fails :meth:`check`."""
        self.check(provenance, allow_dirty=allow_dirty)
        if allow_dirty:
            provenance = {**provenance, "allow_dirty": True}
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "name": self.name,
            "title": self.title,
            "caption": self.caption,
            "columns": self.columns,
            "rows": self.rows,
            "paragraph": self.paragraph,
            "plots": self.plots,
            "power": self.power,
            "data": self.data,
            "provenance": provenance,
        }
        texts = {
            ".md": self.markdown(),
            ".csv": self.csv(),
            ".json": json.dumps(payload, indent=2, default=str) + "\n",
        }
        paths = [folder / f"{self.name}{suffix}" for suffix in texts]
        taken = [p.name for p in paths if p.exists()]
        if taken:  # never overwrite a published table
            raise FileExistsError(f"{folder} already holds {', '.join(taken)}")
        # each file whole (written aside, then linked into place), the JSON last: a kill or a
        # full disk leaves no cut file, and a table whose JSON exists is complete (a resumed
        # ablation run keeps it)
        for path, text in zip(paths, texts.values(), strict=True):
            write_new(path, text)
        return paths


def figure(width: float = 6.0, height: float = 3.5):
    """A matplotlib Figure without pyplot's global state (safe in threads and headless)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig
