"""The verdict table at the top of ``results/ablations/README.md``: each claim of the
Transformer² and SEAL papers that an ablation table tests → our measurement with its 95% CI →
supported, contradicted or undetermined at this n, with the minimum detectable difference.

It is computed from the newest result of each table (the per-item scores every table keeps under
``data`` in its JSON), so it changes only when a table does, and each line names the table file
it came from.

- **supported**: the whole 95% interval of our difference lies on the claimed side of zero;
- **contradicted**: it lies on the other side;
- **undetermined at this n**: it includes zero. A true difference smaller than the minimum
  detectable difference (MDD: two-sided 5% test, 80% power, at the base rate) could go unseen.

Questions of one passage (SEAL) are clustered: their intervals resample whole passages and
their MDD uses the effective n (n / design effect). Cost claims compare our first/second-pass
time ratio with the paper's (no interval: timings on this machine, one run).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from t2bench.core.stats import (
    clustered_difference,
    design_effect,
    minimum_detectable_difference,
    paired_difference,
)
from t2bench.core.tables import markdown_rows

T2 = "Transformer²"
SEAL = "SEAL"
VERDICTS = ("supported", "contradicted", "undetermined at this n")


@dataclass
class Measurement:
    """One claim measured once: ``diff`` is a paired difference (fractions) whose sign the
    claim predicts (``sign``); a cost claim has ``value`` and ``paper`` ratios instead."""

    claim: str
    source: str
    what: str
    table: str
    n: int
    diff: dict | None = None
    mdd: float | None = None
    sign: int = 1
    value: float | None = None
    paper: float | None = None

    @property
    def verdict(self) -> str:
        if self.diff is None:
            return VERDICTS[0] if self.value <= self.paper else VERDICTS[1]
        lo, hi = self.diff["ci_low"] * self.sign, self.diff["ci_high"] * self.sign
        lo, hi = min(lo, hi), max(lo, hi)
        if lo > 0:
            return VERDICTS[0]
        if hi < 0:
            return VERDICTS[1]
        return VERDICTS[2]

    def cells(self) -> list[str]:
        if self.diff is None:
            found = f"{self.value:.0%} of the second pass (paper {self.paper:.0%})"
            mdd = "—"
        else:
            d = self.diff
            found = f"{100 * d['diff']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"
            mdd = f"{100 * self.mdd:.1f}"
        return [
            f"{self.claim} ({self.source})",
            self.what,
            str(self.n),
            found,
            mdd,
            f"**{self.verdict}**",
            f"[{Path(self.table).stem}]({self.table})",
        ]


COLUMNS = [
    "claim (source)",
    "our measurement",
    "n",
    "Δ points [95% CI] (or cost)",
    "MDD points",
    "verdict",
    "table",
]


def _paired(base: list, other: list, clusters: list | None = None) -> tuple[dict, float]:
    """The difference other − base with its interval, and the comparison's MDD."""
    p = float(np.mean(base))
    if clusters is None:
        return paired_difference(base, other), minimum_detectable_difference(len(base), p)
    deff = design_effect(base, clusters) if len(set(base)) > 1 else 1.0
    n_eff = max(1, round(len(base) / deff))
    return clustered_difference(base, other, clusters), minimum_detectable_difference(n_eff, p)


def _measure(claim, source, what, table, base, other, sign=1, clusters=None) -> Measurement:
    diff, mdd = _paired(base, other, clusters)
    return Measurement(claim, source, what, table, len(base), diff, mdd, sign)


# ------------------------------------------------------------------ one reader per table


def _table1(t: dict, f: str) -> Iterator[Measurement]:
    for task, d in t["data"].items():
        if not isinstance(d, dict) or "base" not in d:
            continue
        # the SVF row: by policy gradient, or its NTP fallback where PG had no signal
        label = next((k for k in ("SVF (PG)", "SVF (NTP)") if k in d), None)
        svf, lora = d.get(label), d.get("LoRA (NTP)")
        if svf is not None:
            yield _measure(
                "SVF improves a training task over the base model",
                f"{T2} Table 1",
                f"{task}: {label} − base",
                f,
                d["base"],
                svf,
            )
        if svf is not None and lora is not None:
            yield _measure(
                "SVF beats LoRA on the training tasks",
                f"{T2} Table 1",
                f"{task}: {label} − LoRA (NTP)",
                f,
                lora,
                svf,
            )


#: Table 2's strategies the paper claims improve unseen tasks, by their data key
_STRATEGIES = {"cem": "few-shot (CEM)", "prompt": "prompt", "classifier": "classifier"}


def _table2(t: dict, f: str) -> Iterator[Measurement]:
    for task, d in t["data"].items():
        if not isinstance(d, dict) or "base" not in d:
            continue  # not a task (the end-to-end check)
        for key, label in _STRATEGIES.items():
            if key in d:
                yield _measure(
                    "Two-pass adaptation improves unseen tasks over the base model",
                    f"{T2} Table 2",
                    f"{task}: {label} − base",
                    f,
                    _on(d, key, "base"),
                    d[key],
                )
        if "cem" in d and "LoRA" in d:
            yield _measure(
                "SVF experts adapt to unseen tasks better than LoRA",
                f"{T2} Table 2",
                f"{task}: few-shot (CEM) − LoRA",
                f,
                _on(d, "cem", "LoRA"),
                d["cem"],
            )


def _on(d: dict, key: str, other: str) -> list:
    """``d[other]`` on the documents ``d[key]`` scored: all of them, or for CEM those before
    the shots it held back (``cem_doc_ids``)."""
    ids = d.get(f"{key}_doc_ids")
    if ids is None:
        return d[other]
    by_doc = dict(zip(d["doc_ids"], d[other], strict=True))
    return [by_doc[i] for i in ids]


def _table3(t: dict, f: str) -> Iterator[Measurement]:
    for r in t["rows"]:
        paper = str(r.get("paper (prompt)") or "").rstrip("%")
        if r.get("strategy") == "prompt" and paper:
            yield Measurement(
                "The prompt strategy's first pass costs at most the paper's share of the "
                "second pass",
                f"{T2} Table 3",
                f"{r['task']}: prompt first / second pass",
                f,
                r["n"],
                value=float(r["ratio"]),
                paper=float(paper) / 100,
            )


#: Table 4's claims: (claim, what, run a, run b, sign of a − b the paper reports)
_TABLE4 = (
    (
        "Policy gradient beats next-token prediction for SVF",
        "attn: SVF PG − SVF NTP",
        "math-svf-pg-attn",
        "math-svf-ntp-attn",
        1,
    ),
    (
        "SVF reaches LoRA's score with far fewer parameters",
        "SVF PG (mlp) − LoRA NTP (q,v)",
        "math-svf-pg",
        "math-lora-ntp",
        1,
    ),
    (
        "MLP + attention is the best SVF module set",
        "SVF PG mlp+attn − SVF PG mlp",
        "math-svf-pg-mlp+attn",
        "math-svf-pg",
        1,
    ),
    (
        "LoRA trained by policy gradient falls behind LoRA by next-token prediction",
        "LoRA PG − LoRA NTP",
        "math-lora-pg",
        "math-lora-ntp",
        -1,
    ),
)


def _table4(t: dict, f: str) -> Iterator[Measurement]:
    d = t["data"]
    for claim, what, a, b, sign in _TABLE4:
        if a in d and b in d:
            yield _measure(claim, f"{T2} Table 4", f"math: {what}", f, d[b], d[a], sign)


def _transfer(t: dict, f: str) -> Iterator[Measurement]:
    for direction, d in t["data"].items():
        if not isinstance(d, dict):
            continue  # the list of skipped directions
        ordered = next((v for k, v in d.items() if k.endswith("(ordered σ)")), None)
        shuffled = [v for k, v in d.items() if "shuffled σ (seed" in k]
        if ordered is None or "target base" not in d:
            continue
        yield _measure(
            "Experts transferred to another model (ordered σ) improve it",
            f"{T2} Table 5",
            f"{direction}: ordered σ − target base",
            f,
            d["target base"],
            ordered,
        )
        if shuffled:
            mean_shuffled = [float(np.mean(col)) for col in zip(*shuffled, strict=True)]
            yield _measure(
                "Transfer needs the singular values in order (ordered beats shuffled σ)",
                f"{T2} Table 5",
                f"{direction}: ordered − mean of {len(shuffled)} shuffled-σ seeds",
                f,
                mean_shuffled,
                ordered,
            )


def _vlm(t: dict, f: str) -> Iterator[Measurement]:
    d = t["data"]
    base = d.get("base (vision side pre-trained)")
    svf = next((v for k, v in d.items() if k.startswith("SVF expert")), None)
    if base and svf:
        yield _measure(
            "An SVF expert improves a vision-language model on TextVQA",
            f"{T2} §4.1",
            "TextVQA: SVF expert − base",
            f,
            base["scores"],
            svf["scores"],
        )


#: SEAL knowledge claims: (claim, what, variant a, variant b), per inner update
_SEAL = (
    (
        "Training on the model's own self-edits beats training on the passage alone",
        "own self-edit (no RL) − passage only",
        "passage + own self-edit (no RL)",
        "passage only",
    ),
    (
        "SEAL's RL rounds improve the self-edits",
        "SEAL round 2 − own self-edit (no RL)",
        "SEAL after round 2",
        "passage + own self-edit (no RL)",
    ),
)


def _seal(t: dict, f: str) -> Iterator[Measurement]:
    d = t["data"]
    for inner in ("lora", "svf"):
        for claim, what, a, b in _SEAL:
            x, y = d.get(f"{a} | {inner}"), d.get(f"{b} | {inner}")
            if x and y:
                yield _measure(
                    claim,
                    f"{SEAL} §4.1",
                    f"{inner} inner update: {what}",
                    f,
                    y["scores"],
                    x["scores"],
                    clusters=y["uids"],
                )


def _forgetting(t: dict, f: str) -> Iterator[Measurement]:
    for inner, d in t["data"].items():
        m = d.get("matrix") if isinstance(d, dict) else None
        if not m:
            continue
        if len(m) < 2:
            continue
        after_own = [m[j][j] for j in range(len(m) - 1)]
        after_all = [m[-1][j] for j in range(len(m) - 1)]
        yield _measure(
            "Later self-edits make the model forget earlier passages",
            f"{SEAL} §4.3",
            f"{inner}: passage accuracy after all {len(m)} edits − right after its own edit "
            "(passages as units)",
            f,
            after_own,
            after_all,
            sign=-1,
        )


READERS: dict[str, Callable[[dict, str], Iterator[Measurement]]] = {
    "table1-training-tasks": _table1,
    "table2-unseen-tasks": _table2,
    "table3-two-pass-cost": _table3,
    "table4-params-vs-score": _table4,
    "transfer": _transfer,
    "vlm-text-vqa": _vlm,
    "seal-knowledge": _seal,
    "seal-knowledge-squad": _seal,
    "seal-forgetting": _forgetting,
}


def measurements(out: Path, newest: dict[str, str]) -> list[Measurement]:
    """Every claim measurement from the newest run of each table (``newest``: table → run)."""
    found = []
    for table, reader in READERS.items():
        if table in newest:
            rel = f"{newest[table]}/{table}.json"
            found += list(reader(json.loads((Path(out) / rel).read_text()), rel))
    return found


def verdict_record(out: Path, newest: dict[str, str], found: list[Measurement]) -> dict:
    """``verdicts.json``: this computation's provenance, each table read with its own
    provenance (commit, weights, seed, split, items, machine, wall time), and the verdicts."""
    from t2bench.core.provenance import provenance

    sources = {}
    for table in READERS:
        if table in newest:
            rel = f"{newest[table]}/{table}.json"
            read = json.loads((Path(out) / rel).read_text())
            sources[table] = {"file": rel, "provenance": read.get("provenance")}
    return {
        "provenance": provenance(),
        "sources": sources,
        "measurements": [asdict(m) | {"verdict": m.verdict} for m in found],
    }


def verdict_section(found: list[Measurement]) -> list[str]:
    """The Markdown lines of the verdict table and its legend."""
    if not found:
        return []
    tally = {v: sum(m.verdict == v for m in found) for v in VERDICTS}
    return [
        "## Verdicts: the papers' claims at our n",
        "",
        f"{len(found)} measurements: "
        + ", ".join(f"{k} {v}" for k, v in tally.items())
        + ". Generated from the newest result of each table (linked); Δ is ours in points, "
        "the claimed direction is that of the claim. A claim is **supported** when the whole "
        "95% interval lies on its side of zero, **contradicted** when it lies on the other, "
        "**undetermined at this n** when it includes zero (a true difference below the MDD — "
        "two-sided 5%, 80% power — can go unseen). SEAL intervals resample whole passages. "
        "Cost claims compare ratios (one timing run, no interval).",
        "",
        *markdown_rows(COLUMNS, (m.cells() for m in found)),
        "",
    ]
