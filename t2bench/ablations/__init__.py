"""``nox -s ablations``: the paper's tables at small scale, one module per table.

Each module has ``NAME`` and ``run(ctx) -> Table``; :func:`run_all` runs them in order inside
one new folder ``results/ablations/<profile>-<UTC time>/`` (nothing is overwritten), then
points ``results/ablations/README.md`` (the index) at it.
"""

from __future__ import annotations

import importlib
import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from t2bench.ablations import verdicts
from t2bench.ablations.context import AblationContext
from t2bench.ablations.profile import get_profile
from t2bench.core.io import (
    WRITE_ERRNOS,
    as_output_error,
    check_writable,
    new_folder,
    os_error_of,
    results_path,
    write_atomic,
    write_json_atomic,
)
from t2bench.core.tables import check_clean_checkout, markdown_rows
from t2bench.errors import ConfigError
from t2bench.models import model_fingerprint

#: run order: Table 4 reuses Table 1's math items, Table 3 and α reuse Table 2's runs,
#: α also shows the transfer table's cross-model CEM.
MODULES = (
    "table1_training",
    "table4_params",
    "table2_unseen",
    "table3_cost",
    "transfer",
    "alpha",
    "vlm",
    "seal",
    "forgetting",
    "squad",
    "performance",
)
SHORT = {m.split("_")[0]: m for m in MODULES}


def select(only: str | None) -> list[str]:
    if not only:
        return list(MODULES)
    names = [s.strip() for s in only.split(",") if s.strip()]
    bad = [n for n in names if n not in MODULES and n not in SHORT]
    if bad:
        raise ConfigError(
            f"unknown ablation(s) {', '.join(bad)}: choose from {', '.join(SHORT)} "
            f"(or the module names {', '.join(MODULES)})"
        )
    return [SHORT.get(n, n) for n in names]


def _stop_if_unwritable(exc: BaseException, folder: Path, status: dict) -> None:
    """A table that failed because the output location is full or read-only stops the run
    (every later table would fail the same way after its work): raise one OutputError naming
    the cause, the folder and the tables already written there."""
    os_exc = os_error_of(exc)
    if os_exc is None or os_exc.errno not in WRITE_ERRNOS:
        return
    done = [k for k, v in status.items() if v.get("ok")]
    kept = f"tables written before it: {', '.join(done)}" if done else "no table was written"
    raise as_output_error(
        os_exc,
        getattr(exc, "filename", None) or folder,
        f"the ablations stopped; {kept} (rerun with --resume {folder} once there is space: "
        "finished evaluations are reused)",
    ) from exc


def run_all(
    profile: str = "cpu",
    *,
    only: str | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    allow_dirty: bool = False,
) -> Path:
    """Run the selected ablations; return the run folder. Raises at the end if any failed.

    A checkout with uncommitted changes is refused before anything runs (its tables could not
    be traced to a commit) unless ``allow_dirty``; the tables then record that they were.

    ``resume``: an interrupted run's folder. Its memo is reused, tables it holds whole are
    kept as written, and the rest are computed and written as in an uninterrupted run."""

    check_clean_checkout(allow_dirty)
    prof = get_profile(profile)
    modules = select(only)
    out = Path(out or results_path("ablations"))
    if resume and not Path(resume).is_dir():
        raise ConfigError(f"--resume {resume}: no such run folder")
    # a read-only or full location is refused before any table runs
    check_writable(Path(resume) if resume else out, "ablations output folder")
    folder = Path(resume) if resume else new_folder(out, prof.name)
    ctx = AblationContext(prof, folder, resume=bool(resume))
    if prof.flush_denormal:
        import torch

        torch.set_flush_denormal(True)
    print(f"ablations ({prof.name}) → {folder}", flush=True)
    fingerprint = model_fingerprint(prof.model)
    status: dict[str, dict] = {}
    sections: list[str] = []
    mods = [importlib.import_module(f"t2bench.ablations.{name}") for name in modules]
    earlier = earlier_seconds(out, prof.name, json.loads(json.dumps(asdict(prof))))
    for i, mod in enumerate(mods):
        if resume and (kept := published(folder, mod.NAME)):
            # written whole before the interruption: a table is never rewritten
            status[mod.NAME], section = kept
            sections.append(section)
            print(f"[{mod.NAME}] kept: written before the interruption", flush=True)
            continue
        t0 = time.perf_counter()
        print(
            f"[{i + 1}/{len(mods)} {mod.NAME}] start, {ctx.elapsed() / 60:.1f} min into the run; "
            + remaining([m.NAME for m in mods[i:]], earlier),
            flush=True,
        )
        try:
            table = mod.run(ctx)
        except Exception as exc:  # keep going: one failed table must not lose the others
            _stop_if_unwritable(exc, folder, status)
            status[mod.NAME] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
            sections.append(f"## {mod.NAME}\n\nFAILED: {type(exc).__name__}: {exc}\n")
            continue
        secs = round(time.perf_counter() - t0, 1)
        try:
            table.write(
                folder,
                ctx.provenance(model_fingerprint=fingerprint, wall_seconds=secs),
                allow_dirty=allow_dirty,
            )
        except OSError as exc:
            _stop_if_unwritable(exc, folder, status)
            raise
        except ValueError as exc:  # the table cannot prove what it claims: not published
            status[mod.NAME] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            sections.append(f"## {mod.NAME}\n\nREFUSED: {type(exc).__name__}: {exc}\n")
            print(f"[{mod.NAME}] refused: {exc}", flush=True)
            continue
        status[mod.NAME] = {
            "ok": True,
            "seconds": secs,
            "files": [f"{table.name}.{x}" for x in ("md", "csv", "json")] + table.plots,
        }
        sections.append(table.markdown())
        print(
            f"[{i + 1}/{len(mods)} {mod.NAME}] done in {secs / 60:.1f} min; "
            + remaining([m.NAME for m in mods[i + 1 :]], earlier),
            flush=True,
        )
    wall = ctx.elapsed()
    summary = {
        "profile": prof.name,
        "full": not only,
        "modules": modules,
        "status": status,
        "wall_seconds": wall,
        "provenance": ctx.provenance(model_fingerprint=fingerprint, wall_seconds=wall),
    }
    write_json_atomic(folder / "run.json", summary)
    write_atomic(folder / "README.md", run_readme(folder, summary, sections))
    write_index(out)
    failed = [k for k, v in status.items() if not v["ok"]]
    print(f"ablations done in {wall:.0f} s: {folder}", flush=True)
    if failed:
        raise RuntimeError(f"ablations failed: {', '.join(failed)} (see {folder / 'run.json'})")
    return folder


def earlier_seconds(out: str | Path, profile: str, config: dict | None = None) -> dict[str, float]:
    """Seconds each table took in the newest earlier run of ``profile`` under ``out`` that
    wrote it: the basis of the progress lines' remaining-time estimate. ``config`` (the
    profile's fields, as run.json records them): only runs of exactly that configuration
    count, since a run at other n says nothing about this one's time."""
    seconds: dict[str, float] = {}
    for run_json in sorted(Path(out).glob(f"{profile}-*/run.json"), reverse=True):
        try:
            summary = json.loads(run_json.read_text())
        except (OSError, ValueError):
            continue
        if config is not None and (summary.get("provenance") or {}).get("profile") != config:
            continue
        for table, st in summary.get("status", {}).items():
            if st.get("ok") and st.get("seconds") is not None and table not in seconds:
                seconds[table] = float(st["seconds"])
    return seconds


def remaining(tables: list[str], earlier: dict[str, float]) -> str:
    """'about N min left for these tables', from earlier runs' timings of the same tables;
    tables never timed before are counted, not guessed."""
    if not tables:
        return "nothing left"
    known = [earlier[t] for t in tables if t in earlier]
    unknown = len(tables) - len(known)
    text = f"about {sum(known) / 60:.0f} min left for {len(known)} table(s) by earlier runs"
    if unknown:
        text += f", plus {unknown} never timed before"
    return text if known else f"{unknown} table(s) left, none timed before"


def published(folder: Path, name: str) -> tuple[dict, str] | None:
    """The status and Markdown of table ``name`` if ``folder`` holds it whole (its JSON, which
    :meth:`Table.write` writes last, exists); None otherwise, after removing the Markdown and
    CSV a kill left without their JSON, so that the resumed run writes the table again."""
    payload = folder / f"{name}.json"
    if not payload.is_file():
        for suffix in (".md", ".csv"):
            (folder / f"{name}{suffix}").unlink(missing_ok=True)
        return None
    table = json.loads(payload.read_text())
    status = {
        "ok": True,
        "seconds": table["provenance"].get("wall_seconds"),
        "files": [f"{name}.{x}" for x in ("md", "csv", "json")] + table["plots"],
        "kept_from_interrupted_run": True,
    }
    return status, (folder / f"{name}.md").read_text()


def run_readme(folder: Path, summary: dict, sections: list[str]) -> str:
    prov = summary["provenance"]
    lines = [
        f"# Ablations — profile `{summary['profile']}`",
        "",
        f"commit `{prov['commit']}`, {prov['created_utc']}, model {prov['base_model']} "
        f"(weights sha256 `{prov['model_fingerprint']['sha256_weights']}`), seed {prov['seed']}, "
        f"{prov['machine']['cpu_count']} CPUs, torch {prov['machine']['torch']}; "
        f"**wall time {summary['wall_seconds'] / 60:.1f} min**.",
        "",
    ]
    rows = []
    for name, st in summary["status"].items():
        files = ", ".join(f"[{f}]({f})" for f in st.get("files", [])) or st.get("error", "")
        rows.append([name, st.get("seconds", "failed"), files])
    lines += markdown_rows(["table", "seconds", "files"], rows)
    lines += [
        "",
        "Regenerate: `nox -s ablations` (or `t2bench ablations --profile "
        f"{summary['profile']}`). Per-evaluation records: `evaluations.jsonl`.",
        "",
    ]
    return "\n".join(lines) + "\n" + "\n".join(sections)


def _is_full(summary: dict) -> bool:
    # runs before the VLM table record no "full": they ran all seven tables of that time
    return summary.get("full", len(summary["modules"]) >= 7)


def write_index(out: Path) -> Path:
    """results/ablations/README.md: the verdict table (:mod:`~t2bench.ablations.verdicts`, also
    as ``verdicts.json``), then every run, newest first; the newest complete one is current,
    and each table points at the newest run that produced it (supplementary ``--only`` runs)."""
    runs = []
    for run_json in sorted(Path(out).glob("*/run.json"), reverse=True):
        s = json.loads(run_json.read_text())
        ok = all(v["ok"] for v in s["status"].values())
        runs.append((run_json.parent.name, s, ok))
    latest = next((r for r in runs if r[2] and _is_full(r[1])), None)
    lines = ["# Ablation runs", ""]
    if latest:
        lines += [f"**Latest complete run: [{latest[0]}]({latest[0]}/README.md)**", ""]
    newest: dict[str, str] = {}
    for name, s, _ in runs:
        for table, st in s["status"].items():
            if st.get("ok") and table not in newest:
                newest[table] = name
    found = verdicts.measurements(Path(out), newest)
    lines += verdicts.verdict_section(found)
    if found:
        write_atomic(
            Path(out) / "verdicts.json",
            json.dumps(verdicts.verdict_record(Path(out), newest, found), indent=2) + "\n",
        )
    if newest:
        lines += ["Newest result of each table:", ""]
        lines += markdown_rows(
            ["table", "run"], ([t, f"[{r}]({r}/{t}.md)"] for t, r in sorted(newest.items()))
        )
        lines.append("")
    rows = []
    for name, s, ok in runs:
        failed = ", ".join(k for k, v in s["status"].items() if not v["ok"])
        rows.append(
            [
                f"[{name}]({name}/README.md)",
                s["profile"],
                len(s["modules"]),
                f"{s['wall_seconds'] / 60:.1f}",
                f"`{s['provenance']['commit'][:12]}`",
                "ok" if ok else "failed: " + failed,
            ]
        )
    lines += markdown_rows(["run", "profile", "tables", "wall min", "commit", "status"], rows)
    return write_atomic(Path(out) / "README.md", "\n".join(lines) + "\n")
