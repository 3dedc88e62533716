"""Trained adapters against the base model through ``lm_eval --model t2`` on a standard task.

    python -m t2bench.bench.lmeval_paired --task arc_easy \\
        --adapters results/experts/reasoning-svf-pg/reasoning-svf-pg.safetensors [--limit N]

The base weights (``dispatch=none``) and each adapter (an SVF expert file applied with
``dispatch=fixed``, or a peft adapter folder with ``peft=``) answer the same first ``--limit``
documents of the task (all by default). Per adapter: the task's metric, the paired difference
to base with its 95% CI (Newcombe; McNemar p) and the comparison's minimum detectable
difference, and the proof that the adapter was applied (SVF compositions, peft merge). Writes
``lmeval-<task>-<UTC>.{json,md}`` under ``--out`` (default results/experts) with provenance.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from t2bench.bench.dispatch import run_lm_eval, run_provenance
from t2bench.core.io import new_record_with_markdown, results_path
from t2bench.core.provenance import git_commit, provenance
from t2bench.core.stats import accuracy, paired_difference, power_record
from t2bench.core.tables import adapter_claim, diff_cell, markdown_rows


def model_args(adapter: Path) -> tuple[str, str, str]:
    """(name, model_args, adapter kind) of an SVF expert file or a peft adapter folder."""
    if adapter.suffix == ".safetensors":
        return adapter.stem, f"experts={adapter},dispatch=fixed:{adapter.stem}", "svf"
    if (adapter / "adapter_config.json").is_file():
        return adapter.name, f"peft={adapter}", "peft"
    raise SystemExit(
        f"{adapter}: neither an SVF expert file (.safetensors) nor a peft adapter folder "
        "(with adapter_config.json)"
    )


def compare(
    task: str,
    adapters: list[Path],
    limit: int | None,
    batch_size: int,
    model: str | None = None,
) -> dict:
    t0 = time.perf_counter()
    # the code that runs is the code at the start: a commit made during the hours the runs
    # take must not be credited with their numbers
    commit = git_commit()
    pre = f"pretrained={model}," if model else ""
    base = run_lm_eval(pre + "dispatch=none", task, limit, None, batch_size)
    docs = sorted(base["per_doc"])
    b = [base["per_doc"][d] for d in docs]
    acc = accuracy(b)
    record = {
        "task": task,
        "metric": base["metric"],
        # the lm-eval filter whose per-document scores are compared (a task's first one)
        "filter": base.get("filter"),
        "limit": limit,
        "base": {"score": acc["score"], "n": acc["n"], "run": run_provenance(base)},
        "power": power_record(f"{task} ({base['metric']})", len(b), acc["score"]),
        "adapters": {},
    }
    for path in adapters:
        name, args, kind = model_args(path)
        r = run_lm_eval(pre + args, task, limit, None, batch_size)
        if sorted(r["per_doc"]) != docs:
            raise RuntimeError(f"{name} scored other documents than the base run")
        scores = [r["per_doc"][d] for d in docs]
        record["adapters"][name] = {
            "path": str(path),
            "score": accuracy(scores)["score"],
            "difference_to_base": paired_difference(b, scores),
            "adapter_claim": adapter_claim(kind if kind == "svf" else "lora", {"t2": r["t2"]}),
            "run": run_provenance(r),
            "wall_seconds": r["wall_seconds"],
        }
        print(f"[{task}] {name}: {record['adapters'][name]['score']:.4f}", flush=True)
    now = git_commit()
    record["provenance"] = provenance(
        commit=commit,
        **({"commit_when_written": now} if now != commit else {}),
        data_split=base["split"],
        seed=base["seeds"],
        doc_ids=docs,
        weights_sha256=(base.get("t2") or {}).get("weights_sha256"),
        wall_seconds=round(time.perf_counter() - t0, 1),
    )
    return record


def markdown(rec: dict) -> str:
    pw = rec["power"]
    rows = [["base", f"{rec['base']['score']:.4f}", "", "", "", ""]]
    for name, a in rec["adapters"].items():
        d = a["difference_to_base"]
        rows.append(
            [
                name,
                f"{a['score']:.4f}",
                diff_cell(d),
                f"{d['p']:.3g}",
                f"{d['wins']}/{d['losses']}",
                f"{a['adapter_claim']['applied']} ({a['adapter_claim']['evidence']})",
            ]
        )
    cols = [
        "variant",
        rec["metric"] + (f" ({rec['filter']})" if rec.get("filter") else ""),
        "Δ vs base (points) [95% CI]",
        "p",
        "W/L",
        "adapter applied",
    ]
    return (
        f"# {rec['task']} through `lm_eval --model t2`: adapters vs base\n\n"
        f"n = {pw['n']} documents ({'first ' + str(rec['limit']) if rec['limit'] else 'all'}), "
        f"base {100 * pw['p_base']:.1f}%, minimum detectable difference "
        f"{100 * pw['mdd']:.1f} points (two-sided 5%, 80% power). commit "
        f"`{rec['provenance']['commit']}`, {rec['provenance']['wall_seconds']} s.\n\n"
        + "\n".join(markdown_rows(cols, rows))
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", required=True, help="an lm-eval task of tasks/ (e.g. arc_easy)")
    p.add_argument(
        "--adapters", default="", help="comma list of expert files / peft folders (none: base only)"
    )
    p.add_argument("--limit", type=int, default=None, help="first n documents (default: all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    p.add_argument("--out", default=str(results_path("experts")))
    a = p.parse_args(argv)
    adapters = [Path(x) for x in a.adapters.split(",") if x]
    rec = compare(a.task, adapters, a.limit, a.batch_size, a.model)
    text = markdown(rec)
    path = new_record_with_markdown(Path(a.out), f"lmeval-{a.task}", rec, text)
    print(text)
    print(f"written {path}")


if __name__ == "__main__":
    main()
