"""Two-pass measurements through lm-eval: first-pass cost per strategy, and few-shot CEM
against the single experts and the base model.

    python -m t2bench.bench.dispatch cost    [--strategies prompt,classifier,label,router,cem]
                                             [--tasks arc_challenge:40,gsm8k:10,humaneval:10]
    python -m t2bench.bench.dispatch fewshot [--tasks arc_challenge:100,humaneval:40,minerva_math_prealgebra:30]
    python -m t2bench.bench.dispatch firstpass [--tasks arc_challenge:150,humaneval:24,minerva_math_prealgebra:40]
                                               [--strategies 'label:layout=question-first;reuse=false,label,...']

Every run is ``lm_eval.simple_evaluate(model="t2", ...)`` on the embedded model, so the
numbers are those of ``lm_eval --model t2 --model_args ...,dispatch=<strategy>``.

* cost: the backend's own clocks (``config.t2``): first-pass seconds (the dispatcher's
  ``choose``), second-pass seconds (HFLM's batched methods per expert group), their ratio; for
  CEM the one-off α search per task is reported apart and the ratio is given with and without it.
* firstpass: Table 3's ratio (a strategy's first-pass seconds over the base run's second-pass
  seconds on the same documents) for several strategy specs in one run, e.g. before and after
  an option, plus what each first pass ran through the model (prompt vs encoded tokens,
  generated tokens) and its routing accuracy against the task's category. The base run is
  ``lm_eval`` with ``dispatch=none`` and the ablation CPU profile's generation caps; each first
  pass is the dispatcher's ``choose`` on all documents at once, as the backend calls it, on one
  shared model, strategies interleaved in the given order.
* fewshot: per task, the first ``n`` evaluation documents under base, each single expert and
  CEM. Each accuracy has a 95% Wilson interval; per-document scores are paired to give each
  variant's difference to base with Newcombe's paired score interval and McNemar's exact p
  (:mod:`t2bench.core.stats`: neither is zero-width at 0/n or when no document changed), and
  each task states its minimum detectable difference. CEM's shots never overlap the scored
  documents (the dispatcher refuses that).

Writes a new JSON + Markdown record under results/bench/ (cost) or results/dispatch/ (fewshot).
Every record carries the commit (read when the run starts; '+dirty' for an uncommitted tree),
the base weights' sha256 as each lm-eval run's backend hashed them, lm-eval's seeds, each task's
split and scored document ids (and their sha256), CEM's shot ids and split, machine and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from t2bench.core import stats
from t2bench.core.io import new_record, results_path
from t2bench.core.provenance import git_commit, items_sha256, provenance
from t2bench.core.tables import markdown_rows, power_line
from t2bench.dispatch.categories import EXPERT_LABELS
from t2bench.tasks import tasks_dir
from t2bench.tasks.code_exec import runners_used

METRICS = {
    "arc": "acc",
    "humaneval": "pass@1",
    "minerva_math": "exact_match",
    "gsm8k": "exact_match",
    "t2vqa": "vqa_accuracy",
    "textvqa": "vqa_accuracy",
    "sciq": "acc",
    "t2_basic": "acc",  # t2_basic_arithmetic, t2_basic_coding
    # their generation twins (t2bench.tasks.lettered): the letter a greedy completion names
    "sciq_gen": "exact_match",
    "t2_basic_arithmetic_gen": "exact_match",
    "t2_basic_coding_gen": "exact_match",
}
EXPERTS = str(results_path("experts"))


def cem_spec(args, task: str) -> str:
    """The CEM options for a task: ``--cem-for task=options`` overrides ``--cem``."""
    for item in args.cem_for or []:
        name, _, spec = item.partition("=")
        if name == task:
            return spec
    return args.cem


def t2_args(experts: str, spec: str) -> str:
    """``--model_args`` for one strategy. ``none`` loads no experts: lm-eval reads the value
    ``none`` as Python's None, which with several experts loaded is refused as no choice."""
    return "dispatch=none" if spec == "none" else f"experts={experts},dispatch={spec}"


def parse_tasks(spec: str) -> list[tuple[str, int]]:
    out = []
    for part in spec.split(","):
        name, _, n = part.strip().partition(":")
        out.append((name, int(n or 20)))
    return out


def metric_of(task: str) -> str:
    """The per-document metric of ``task``: that of the longest :data:`METRICS` prefix it
    starts with (``sciq_gen`` is not ``sciq``)."""
    for prefix in sorted(METRICS, key=len, reverse=True):
        if task.startswith(prefix):
            return METRICS[prefix]
    raise SystemExit(f"no per-document metric known for task {task!r}: add it to METRICS")


def task_manager(task: str):
    """lm-eval's TaskManager over the offline task folder; lm-eval's own ~14k YAMLs (about
    20 s to index) only when the task is not in that folder."""
    from lm_eval.tasks import TaskManager

    local = tasks_dir()
    return TaskManager(
        include_path=str(local), include_defaults=not (local / f"{task}.yaml").is_file()
    )


def run_lm_eval(
    model_args: str,
    task: str,
    limit: int,
    max_gen_toks: int,
    batch_size: int,
    *,
    model: str = "t2",
) -> dict:
    """One lm-eval run: per-document scores, the aggregate, the backend's t2 summary, wall time."""
    from lm_eval import simple_evaluate

    t0 = time.perf_counter()
    out = simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=[task],
        limit=limit,
        batch_size=batch_size,
        task_manager=task_manager(task),
        log_samples=True,
        bootstrap_iters=0,
        gen_kwargs=f"max_gen_toks={max_gen_toks}" if max_gen_toks else None,
        confirm_run_unsafe_code=True,
    )
    wall = time.perf_counter() - t0
    metric = metric_of(task)
    samples = out["samples"][task]
    first_filter = samples[0].get("filter")
    per_doc = {s["doc_id"]: float(s[metric]) for s in samples if s.get("filter") == first_filter}
    score = next(v for k, v in out["results"][task].items() if k.split(",")[0] == metric)
    task_cfg = (out.get("configs") or {}).get(task, {})
    return {
        "per_doc": per_doc,
        "score": score,
        "metric": metric,
        "filter": first_filter,
        "t2": out["config"].get("t2"),
        "split": {k: task_cfg.get(k) for k in ("test_split", "fewshot_split", "num_fewshot")},
        "seeds": {
            k: out["config"].get(k)
            for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")
        },
        "wall_seconds": round(wall, 2),
        # humaneval/mbpp: the runners that executed the model's programs so far in this process
        **({"code_runners": runners_used()} if runners_used() else {}),
    }


def run_provenance(r: dict) -> dict:
    """What one lm-eval run scored and from what: split, document ids (and their sha256),
    lm-eval's seeds and the base weights' sha256 as the backend hashed them."""
    docs = sorted(r["per_doc"])
    return {
        "split": r.get("split"),
        "doc_ids": docs,
        "docs_sha256": items_sha256(docs),
        "seeds": r.get("seeds"),
        "weights_sha256": (r.get("t2") or {}).get("weights_sha256"),
        **({"code_runners": r["code_runners"]} if r.get("code_runners") else {}),
    }


def common(rows: list[dict], key: str):
    """The one value of ``key`` that every row shares, or {label: value} when they differ."""
    values = {json.dumps(r.get(key), sort_keys=True) for r in rows}
    if len(values) == 1:
        return rows[0].get(key) if rows else None
    return {f"{r.get('task')}/{r.get('variant', r.get('strategy'))}": r.get(key) for r in rows}


def record_provenance(rows: list[dict], commit: str, wall_seconds: float) -> dict:
    """The record's provenance: commit, machine, time, and what its rows share (weights,
    seeds), with each task's split and scored document ids."""
    tasks: dict[str, dict] = {}
    for r in rows:
        tasks.setdefault(
            r["task"],
            {
                "split": r.get("split"),
                "doc_ids": r.get("doc_ids"),
                "docs_sha256": r.get("docs_sha256"),
            },
        )
    return provenance(
        commit=commit,
        model_source=common(rows, "model_id"),
        weights_sha256=common(rows, "weights_sha256"),
        seed=common(rows, "seeds"),
        data_split=tasks,
        items_sha256={t: v["docs_sha256"] for t, v in tasks.items()},
        wall_seconds=wall_seconds,
    )


def _search_seconds(t2: dict) -> float:
    tasks = (t2.get("dispatch") or {}).get("tasks") or {}
    return sum(
        (t.get("cost") or {}).get("seconds", 0.0) for t in tasks.values() if not t.get("from_cache")
    )


def cost(args) -> dict:
    rows = []
    for task, n in parse_tasks(args.tasks):
        for strategy in ["none", *args.strategies.split(",")]:
            spec = strategy if strategy != "cem" else f"cem:{cem_spec(args, task)}"
            r = run_lm_eval(
                t2_args(args.experts, spec),
                task,
                n,
                args.max_gen_toks,
                args.batch_size,
            )
            t2 = r["t2"]
            first, second = t2["dispatch_seconds"], t2["second_pass_seconds"]
            search = _search_seconds(t2)
            row = {
                "task": task,
                "n": len(r["per_doc"]),
                "strategy": strategy,
                "score": r["score"],
                "first_pass_s": round(first, 3),
                "second_pass_s": round(second, 3),
                "fraction": round(first / second, 4) if second else None,
                "cem_search_s": round(search, 2) if strategy == "cem" else None,
                "fraction_without_search": round((first - search) / second, 4)
                if strategy == "cem" and second
                else None,
                "dispatch_counts": t2["dispatch_counts"],
                "wall_seconds": r["wall_seconds"],
                "dispatch": t2["dispatch"],
                "model_id": t2.get("model_id"),
                **run_provenance(r),
            }
            rows.append(row)
            print(
                f"{task:24} {strategy:10} first {first:8.2f}s second {second:8.2f}s "
                f"fraction {row['fraction']}  counts {t2['dispatch_counts']}",
                flush=True,
            )
    return {"kind": "dispatch-cost", "rows": rows}


def firstpass(args) -> dict:
    import torch

    from t2bench.ablations.profile import CPU
    from t2bench.dispatch import DispatchRequest
    from t2bench.dispatch.routing_items import first_docs
    from t2bench.dispatch.standalone import load_bound
    from t2bench.models import load_model

    lm = load_model(None)
    rows = []
    for task, n in parse_tasks(args.tasks):
        cap = CPU.max_gen_toks.get(task, args.max_gen_toks)
        base = run_lm_eval(t2_args(args.experts, "none"), task, n, cap, args.batch_size)
        second = base["t2"]["second_pass_seconds"]
        items = first_docs(task, n)
        if sorted(it.doc_id for it in items) != sorted(base["per_doc"]):
            raise RuntimeError(f"{task}: the first passes would not see the base run's documents")
        print(f"{task:24} base second pass {second:8.2f}s on {len(items)} docs", flush=True)
        for spec in args.strategies.split(","):
            bound = load_bound(spec, experts=args.experts, batch_size=args.batch_size, lm=lm)
            d = bound.dispatcher
            reqs = [DispatchRequest(it.text, it.task, it.doc_id) for it in items]
            try:
                t0 = time.perf_counter()
                with torch.no_grad():
                    keys = [c.key for c in d.choose(reqs)]
                first = time.perf_counter() - t0
            finally:
                if bound.patcher is not None:
                    bound.patcher.restore()
            info = d.describe()
            memo = getattr(d, "memo", None)
            labels = [memo[it.text] for it in items] if memo is not None else None
            row = {
                "task": task,
                "n": len(items),
                "strategy": spec,
                "first_pass_s": round(first, 3),
                "second_pass_s": round(second, 3),
                "fraction": round(first / second, 4),
                "tokens": {
                    k: info.get(k)
                    for k in ("prompt_tokens", "encoded_tokens", "generated_tokens", "head_reused")
                    if k in info
                },
                "labels": labels,
                "keys": keys,
                "dispatch": info,
                "base_score": base["score"],
                "metric": base["metric"],
                "model_id": (base.get("t2") or {}).get("model_id"),
                **run_provenance(base),
            }
            if labels is not None:
                truth = items[0].true
                row["routing"] = stats.accuracy([int(lab == truth) for lab in labels])
                row["routing"]["true_label"] = truth
            rows.append(row)
            acc = row.get("routing", {}).get("score")
            print(
                f"{task:24} {spec:44} first {first:8.2f}s = {100 * first / second:6.1f}% "
                f"routing {acc if acc is None else round(acc, 3)} {row['tokens']}",
                flush=True,
            )
    return {"kind": "first-pass-cost", "rows": rows}


def firstpass_markdown(payload: dict) -> str:
    rows = []
    for r in payload["rows"]:
        tok = r["tokens"]
        route = r.get("routing")
        rows.append(
            [
                r["task"],
                r["n"],
                f"`{r['strategy']}`",
                f"{r['first_pass_s']:.2f}",
                f"{r['second_pass_s']:.2f}",
                f"{100 * r['fraction']:.1f}%",
                tok.get("prompt_tokens", ""),
                tok.get("encoded_tokens", ""),
                tok.get("generated_tokens", ""),
                ""
                if route is None
                else f"{route['score']:.3f} [{route['ci_low']:.3f}, {route['ci_high']:.3f}]",
            ]
        )
    head = ["task", "n", "strategy", "first pass s", "base second pass s", "first / second"]
    tail = ["prompt tokens", "encoded tokens", "generated tokens", "routed right (95% Wilson)"]
    lines = markdown_rows([*head, *tail], rows)
    # routing rates are compared between specs: per task, its n and the MDD at the first spec's
    # rate (the run's reference, e.g. the before setting)
    first = {}
    for r in payload["rows"]:
        if r.get("routing"):
            first.setdefault(r["task"], r)
    power = [
        stats.power_record(
            f"{task} routing (reference `{r['strategy']}`)", r["n"], r["routing"]["score"]
        )
        for task, r in first.items()
    ]
    if power:
        lines += ["", power_line(power).replace("base ", "reference ")]
    return "\n".join(lines)


def cost_markdown(payload: dict) -> str:
    rows = []
    for r in payload["rows"]:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r["dispatch_counts"].items()))
        frac = "" if r["fraction"] is None else f"{100 * r['fraction']:.1f}%"
        wo = (
            ""
            if r["fraction_without_search"] is None
            else f"{100 * r['fraction_without_search']:.1f}%"
        )
        rows.append(
            [
                r["task"],
                r["n"],
                r["strategy"],
                f"{r['score']:.3f}",
                f"{r['first_pass_s']:.2f}",
                f"{r['second_pass_s']:.2f}",
                frac,
                r["cem_search_s"] or "",
                wo,
                counts,
            ]
        )
    head = ["task", "n", "strategy", "score", "first pass s", "second pass s", "first/second"]
    lines = markdown_rows([*head, "CEM search s", "without search", "experts chosen"], rows)
    return "\n".join(lines)


def fewshot_rows(task: str, runs: dict[str, dict]) -> tuple[list[dict], dict]:
    """One row per variant of ``task`` from its lm-eval runs (``runs["base"]`` first) and the
    task's power record.

    A document counts as correct when its score is at least 0.5. Accuracy: Wilson 95% interval;
    difference to base on the same documents: Newcombe's paired interval and McNemar's exact p.
    """
    docs = sorted(runs["base"]["per_doc"])
    base = [int(runs["base"]["per_doc"][d] >= 0.5) for d in docs]
    rows = []
    for name, r in runs.items():
        if sorted(r["per_doc"]) != docs:
            raise RuntimeError(
                f"{task}: variant {name} scored documents {sorted(r['per_doc'])}, base {docs}: "
                "paired differences need the same documents"
            )
        mine = [int(r["per_doc"][d] >= 0.5) for d in docs]
        acc = stats.accuracy(mine)
        row = {
            "task": task,
            "variant": name,
            "n": acc["n"],
            "metric": r["metric"],
            "score": acc["score"],
            "ci95": [acc["ci_low"], acc["ci_high"]],
            "ci_method": "wilson",
            "wall_seconds": r["wall_seconds"],
            "model_id": (r.get("t2") or {}).get("model_id"),
            **run_provenance(r),
        }
        if name != "base":
            row["vs_base"] = stats.paired_difference(base, mine)
        if name == "cem":
            row["cem"] = r["t2"]["dispatch"]["tasks"][task]
            row["cem_shots"] = {
                "split": row["cem"].get("shot_split"),
                "doc_ids": row["cem"].get("shot_doc_ids"),
            }
        rows.append(row)
    return rows, stats.power_record(task, len(docs), sum(base) / len(docs))


def fewshot(args) -> dict:

    rows, power = [], []
    for task, n in parse_tasks(args.tasks):
        variants = {"base": "none"}
        for label in EXPERT_LABELS:
            variants[f"{label}-svf-pg"] = f"fixed:{label}-svf-pg"
        variants["cem"] = f"cem:{cem_spec(args, task)}"
        runs = {}
        for name, spec in variants.items():
            runs[name] = run_lm_eval(
                t2_args(args.experts, spec), task, n, args.max_gen_toks, args.batch_size
            )
            print(
                f"{task:24} {name:18} {runs[name]['score']:.3f} ({runs[name]['wall_seconds']}s)",
                flush=True,
            )
        task_rows, task_power = fewshot_rows(task, runs)
        rows += task_rows
        power.append(task_power)
    return {"kind": "fewshot-vs-experts", "rows": rows, "power": power}


def fewshot_markdown(payload: dict) -> str:
    rows = []
    for r in payload["rows"]:
        d = r.get("vs_base")
        diff = "" if d is None else f"{100 * d['diff']:+.1f}"
        ci = "" if d is None else f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"
        p = "" if d is None else f"{d['p']:.2f}"
        rows.append(
            [
                r["task"],
                r["n"],
                r["variant"],
                f"{r['score']:.3f}",
                f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]",
                diff,
                ci,
                p,
            ]
        )
    head = ["task", "n", "variant", "score", "95% Wilson CI", "Δ vs base (points)"]
    lines = markdown_rows([*head, "paired 95% CI (Newcombe)", "p (McNemar exact)"], rows)
    if payload.get("power"):
        lines += ["", power_line(payload["power"])]
    cem = [r for r in payload["rows"] if r["variant"] == "cem"]
    if cem:
        cem_rows = []
        for r in cem:
            c = r["cem"]
            alpha = c["alpha"] if isinstance(c["alpha"], list) else c["alpha_mean_per_expert"]
            cost_ = c["cost"]
            cem_rows.append(
                [
                    r["task"],
                    ", ".join(f"{a:.2f}" for a in alpha),
                    f"{len(c['shot_doc_ids'])} ({c['shot_split']})",
                    f"{c['fitness']['accuracy']:.2f}",
                    cost_["candidates_scored"],
                    cost_["weight_compositions"],
                    cost_["forward_passes"],
                    cost_["seconds"],
                ]
            )
        head = ["task", "α (code, math, reasoning)", "shots (split)", "shot accuracy"]
        lines += [
            "",
            *markdown_rows(
                [*head, "candidates", "compositions", "forward passes", "search s"], cem_rows
            ),
        ]
    return "\n".join(lines)


#: what → (run, markdown, results folder, record stem, default tasks)
MODES = {
    "cost": (
        cost,
        cost_markdown,
        "bench",
        "dispatch-cost",
        "arc_challenge:40,gsm8k:10,humaneval:10",
    ),
    "firstpass": (
        firstpass,
        firstpass_markdown,
        "bench",
        "first-pass-cost",
        "arc_challenge:150,humaneval:24,minerva_math_prealgebra:40",
    ),
    "fewshot": (
        fewshot,
        fewshot_markdown,
        "dispatch",
        "fewshot",
        "arc_challenge:100,humaneval:40,minerva_math_prealgebra:30",
    ),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=list(MODES))
    p.add_argument("--tasks", default=None, help="task:n,... (first n evaluation documents)")
    p.add_argument("--strategies", default="prompt,classifier,label,router,cem")
    p.add_argument("--experts", default=EXPERTS)
    p.add_argument("--cem", default="shots=5;population=6;iterations=3;max_gen_toks=160")
    p.add_argument(
        "--cem-for",
        action="append",
        metavar="TASK=OPTIONS",
        help="CEM options for one task (repeatable), e.g. humaneval='shots=3;population=4'",
    )
    p.add_argument("--max-gen-toks", type=int, default=160, help="cap on second-pass generations")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("HF_ALLOW_CODE_EVAL", "1")
    commit = git_commit()  # the code that runs, read before anything can change the tree
    t0 = time.perf_counter()
    run, md, folder, stem, tasks = MODES[a.what]
    a.tasks = a.tasks or tasks
    payload, out = run(a), a.out or str(results_path(folder))
    payload["args"] = vars(a)
    payload["wall_seconds"] = round(time.perf_counter() - t0, 1)
    payload["provenance"] = record_provenance(payload["rows"], commit, payload["wall_seconds"])
    path = new_record(Path(out), stem, payload)
    text = md(payload)
    path.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"record: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
