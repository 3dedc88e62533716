"""The performance table: every speed or cost ratio the benchmarks have recorded, in one place.

Reads the newest record of each kind under ``results/bench/`` (``<kind>-<UTC stamp>.json``,
written by ``nox -s bench`` and the ``python -m t2bench.bench.*`` modules) and lists its ratios
with what they compare against and where they come from (record, commit, machine, time).
Nothing is measured or re-run here. Where a record stores a ratio, that ratio is shown; where it
stores only the two numbers, the ratio is their quotient (``ratio_source`` says which).

A kind without a record gives a row naming the command that writes one; a record that cannot
be read, or lacks some fields, gives what it can, and what was skipped is listed in ``data``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from t2bench.ablations.performance_paragraph import paragraph
from t2bench.ablations.performance_rows import (
    LOOKUP_ERRORS,
    cells,
    extract,
    short_commit,
    short_machine,
)
from t2bench.core.io import results_path
from t2bench.core.stats import power_record
from t2bench.core.tables import Table

NAME = "performance"
BENCH_DIR = results_path("bench")
COLUMNS = [
    "benchmark",
    "measure",
    "value",
    "baseline",
    "ratio",
    "record",
    "commit",
    "machine",
    "created",
]

#: record kind (file-name prefix) -> the command that writes a new record of it
KINDS = {
    "svf": "python -m t2bench.bench.svf (nox -s bench)",
    "backend": "python -m t2bench.bench.backend (nox -s bench)",
    "train-step": "python -m t2bench.bench.train_step",
    "train-parity": "python -m t2bench.bench.train_parity",
    "dispatch-cost": "python -m t2bench.bench.dispatch cost",
}


# ---------------------------------------------------------------------- finding records


def _pattern(kind: str) -> re.Pattern:
    # the stamp must follow the kind directly, so "train-step" never matches "train-parity-…";
    # new_record adds "-1", "-2" … when two records share a second
    return re.compile(rf"^{re.escape(kind)}-(\d{{8}}T\d{{6}}Z)(?:-(\d+))?\.json$")


def records_of(bench_dir: Path, kind: str) -> list[Path]:
    """JSON records of one kind, oldest first (by UTC stamp, then new_record's ``-N`` suffix)."""
    pat = _pattern(kind)
    found = []
    if Path(bench_dir).is_dir():
        for p in Path(bench_dir).iterdir():
            m = pat.match(p.name)
            if m and p.is_file():
                found.append(((m.group(1), int(m.group(2) or 0)), p))
    return [p for _, p in sorted(found)]


def newest(bench_dir: Path, kind: str) -> Path | None:
    recs = records_of(bench_dir, kind)
    return recs[-1] if recs else None


def _unrecognised(bench_dir: Path) -> list[str]:
    if not Path(bench_dir).is_dir():
        return []
    pats = [_pattern(k) for k in KINDS]
    return sorted(
        p.name for p in Path(bench_dir).glob("*.json") if not any(pat.match(p.name) for pat in pats)
    )


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------- the table


def build(bench_dir: Path = BENCH_DIR) -> Table:
    """The performance table from the newest record of each kind under ``bench_dir``."""
    bench_dir = Path(bench_dir)
    rows: list[dict] = []
    used: list[dict] = []
    missing: dict[str, str] = {}
    readable: dict[str, dict] = {}
    for kind, command in KINDS.items():
        path = newest(bench_dir, kind)
        if path is None:
            missing[kind] = command
            rows.append(
                {
                    "benchmark": kind,
                    "key": f"{kind}.missing",
                    "measure": "no record",
                    "value": f"no record; run `{command}`",
                }
            )
            continue
        ctx = {"benchmark": kind, "record": _rel(path)}
        entry = {
            "kind": kind,
            "record": ctx["record"],
            "older": [p.name for p in records_of(bench_dir, kind)[:-1]],
        }
        try:
            rec = json.loads(path.read_text())
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            used.append(entry)
            rows.append(
                cells(
                    ctx
                    | {
                        "key": f"{kind}.unreadable",
                        "measure": "unreadable record",
                        "value": entry["error"],
                    }
                )
            )
            continue
        readable[kind] = rec
        prov = rec.get("provenance") if isinstance(rec.get("provenance"), dict) else {}
        ctx |= {
            "commit": short_commit(prov.get("commit")),
            "machine": short_machine(prov.get("machine")),
            "created": prov.get("created_utc", ""),
        }
        found, skipped = extract(kind, rec)
        entry |= {
            "commit": prov.get("commit"),
            "created_utc": prov.get("created_utc"),
            "machine": prov.get("machine"),
            "rows": len(found),
            "skipped": skipped,
        }
        used.append(entry)
        if not found:
            found = [
                {
                    "key": f"{kind}.empty",
                    "measure": "no measure could be read",
                    "value": "skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()),
                }
            ]
        rows += [cells(ctx | r) for r in found]
    unrecognised = _unrecognised(bench_dir)
    power = power_of(readable)
    return Table(
        NAME,
        "Performance: speed and cost ratios from the benchmark records",
        COLUMNS,
        rows,
        caption=caption(bench_dir),
        paragraph=paragraph(rows, used, missing),
        data={
            "bench_dir": str(bench_dir),
            "records": used,
            "missing": missing,
            "unrecognised_files": unrecognised,
        },
        power=power,
    )


def power_of(records: dict[str, dict]) -> list[dict]:
    """The table's power: the one comparison of scores it shows is the backend parity row (t2
    without experts vs hf on the same documents), so n and hf's score per parity task. Every
    other row is a time or a size; without a readable parity record the table compares no
    scores, and its one power record says so with n = 0."""
    out = []
    try:
        parity = records["backend"]["parity"]
        for task in parity["tasks"]:
            hf = parity["hf"][task]
            metric = next(k for k, v in hf.items() if "," in k and isinstance(v, int | float))
            n = int(hf.get("sample_len") or parity["limit"])
            out.append(
                power_record(
                    f"backend parity on {task} (t2 without experts vs hf, {n} docs; "
                    f"p = hf's {metric})",
                    n,
                    float(hf[metric]),
                )
            )
    except (*LOOKUP_ERRORS, StopIteration):
        out = []  # a parity record without scores: as if there were none
    return out or [
        power_record(
            "no score is compared here (speed and cost ratios only; no readable backend "
            "parity record)",
            0,
            0.0,
        )
    ]


def run(ctx) -> Table:
    return build(BENCH_DIR)


def caption(bench_dir: Path) -> str:
    return (
        f"Every speed or cost ratio the benchmarks recorded, from the newest record of each kind "
        f"under `{bench_dir}` (newest = latest UTC stamp in the file name); nothing is "
        "re-measured. ratio = value over baseline, in the order the measure names them; it is "
        "the record's own ratio where the record stores one, else the quotient of the two "
        "recorded numbers in value (`ratio_source` in the JSON). Commit and machine are the "
        "record's provenance. New records: "
        + "; ".join(f"{k}: `{c}`" for k, c in KINDS.items())
        + "."
    )
