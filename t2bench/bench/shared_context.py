"""Shared-context log-likelihoods against HFLM's one sequence per request, in one process.

    python -m t2bench.bench.shared_context [--tasks arc_easy,arc_challenge] [--limit 300]
        [--rounds 2] [--batch-size 16] [--expert PATH]

One ``t2`` model (the embedded model, or one SVF expert with ``dispatch=fixed``) evaluates each
task's first ``--limit`` documents through lm-eval with ``share_context`` on and off, in
alternating order over ``--rounds``. Reports the seconds of each, their ratio, both runs'
metrics and the documents whose per-document metric differs between the two (the same
computation up to float rounding, so expected none). Writes a JSON record with provenance
under results/bench/ and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from t2bench.core.io import new_record_with_markdown, results_path
from t2bench.core.provenance import provenance
from t2bench.core.tables import markdown_rows
from t2bench.models import model_fingerprint
from t2bench.tasks import tasks_dir

MODES = {"shared": True, "hflm": False}


def _evaluate(lm, task: str, limit: int) -> tuple[dict, dict, float]:
    """Aggregate metrics, per-document metrics by doc id, seconds."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    t0 = time.perf_counter()
    out = simple_evaluate(
        model=lm,
        tasks=[task],
        limit=limit,
        task_manager=TaskManager(include_path=str(tasks_dir())),
        log_samples=True,
        bootstrap_iters=0,
    )
    seconds = time.perf_counter() - t0
    metrics = {
        k.split(",")[0]: v
        for k, v in out["results"][task].items()
        if isinstance(v, float) and "stderr" not in k
    }
    per_doc = {s["doc_id"]: {m: s[m] for m in metrics if m in s} for s in out["samples"][task]}
    return metrics, per_doc, seconds


def measure(
    tasks: list[str],
    limit: int,
    rounds: int,
    batch_size: int,
    expert: str | None = None,
    model: str | None = None,
) -> dict:
    from t2bench.backends.text import T2LM

    t_start = time.perf_counter()
    kw = {"experts": expert, "dispatch": f"fixed:{Path(expert).stem}"} if expert else {}
    lm = T2LM(pretrained=model, batch_size=batch_size, device="cpu", **kw)
    record: dict = {"tasks": {}, "limit": limit, "rounds": rounds, "batch_size": batch_size}
    for task in tasks:
        seconds = {m: [] for m in MODES}
        runs: dict[str, tuple[dict, dict]] = {}
        for r in range(rounds):
            for mode in MODES if r % 2 == 0 else list(MODES)[::-1]:
                lm.share_context = MODES[mode]
                metrics, per_doc, s = _evaluate(lm, task, limit)
                seconds[mode].append(round(s, 2))
                runs[mode] = (metrics, per_doc)
                print(f"[{task}] {mode}: {s:.1f} s {metrics}", flush=True)
        (m_shared, d_shared), (m_hflm, d_hflm) = runs["shared"], runs["hflm"]
        differ = sorted(k for k in d_shared if d_shared[k] != d_hflm.get(k))
        record["tasks"][task] = {
            "docs": len(d_shared),
            "doc_ids": sorted(d_shared),
            "seconds": seconds,
            "hflm_over_shared": round(min(seconds["hflm"]) / min(seconds["shared"]), 2),
            "metrics": {"shared": m_shared, "hflm": m_hflm},
            "docs_whose_metrics_differ": differ,
        }
    record["t2"] = lm.t2_summary()
    record["model_fingerprint"] = model_fingerprint(model)
    record["provenance"] = provenance(
        data_split="tasks as in tasks/README.md (test splits), first `limit` documents",
        seed=0,
        expert=expert,
        wall_seconds=round(time.perf_counter() - t_start, 1),
    )
    return record


def markdown(record: dict) -> str:
    rows = []
    for task, t in record["tasks"].items():
        acc = {m: t["metrics"][m].get("acc") for m in MODES}
        rows.append(
            [
                task,
                t["docs"],
                " / ".join(map(str, t["seconds"]["hflm"])),
                " / ".join(map(str, t["seconds"]["shared"])),
                f"{t['hflm_over_shared']:.2f}×",
                f"{acc['hflm']:.4f} / {acc['shared']:.4f}" if None not in acc.values() else "-",
                len(t["docs_whose_metrics_differ"]),
            ]
        )
    cols = [
        "task",
        "docs",
        "HFLM path s",
        "shared contexts s",
        "speed-up (best of each)",
        "acc HFLM / shared",
        "docs whose metrics differ",
    ]
    prov = record["provenance"]
    return (
        "# Shared-context log-likelihoods vs HFLM's path\n\n"
        f"commit `{prov['commit']}`, {prov['created_utc']}, batch size {record['batch_size']}, "
        f"{record['rounds']} alternating rounds, expert {prov.get('expert') or 'none'}.\n\n"
        + "\n".join(markdown_rows(cols, rows))
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tasks", default="arc_easy,arc_challenge")
    p.add_argument("--limit", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--expert", default=None, help="an SVF expert file, applied with fixed dispatch")
    p.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    p.add_argument("--out", default=str(results_path("bench")))
    a = p.parse_args(argv)
    record = measure(
        [t for t in a.tasks.split(",") if t], a.limit, a.rounds, a.batch_size, a.expert, a.model
    )
    text = markdown(record)
    path = new_record_with_markdown(Path(a.out), "shared-context", record, text)
    print(text)
    print(f"written {path}")


if __name__ == "__main__":
    main()
