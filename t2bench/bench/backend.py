"""The t2 backend against lm-eval's hf backend, in one run on the same model, task and limit.

    python -m t2bench.bench.backend [--tasks arc_challenge] [--limit 200] [--parity-tasks arc_challenge,gsm8k --parity-limit 50]

1. parity: t2 without experts vs hf, scores side by side (must be identical);
2. throughput: t2 with one fixed expert vs hf, wall time over ``--repeats`` alternating runs;
3. grouping: requests alternating between 4 experts: groups run and weight compositions.
Writes a new JSON record with provenance under results/bench/.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from t2bench.backends.text import T2LM
from t2bench.core.io import new_record, results_path
from t2bench.core.provenance import provenance
from t2bench.dispatch import Choice, Dispatcher
from t2bench.models import load_model
from t2bench.svf import TargetSpec, decompose, identity_expert, save_expert
from t2bench.tasks import tasks_dir


class AlternatingDispatch(Dispatcher):
    """Request for document i gets expert i mod K: the worst case for grouping."""

    name = "alternating"
    shardable = True  # the choice is a function of the document id alone

    def __init__(self, experts):
        self.choices = [Choice(e.meta.name, e) for e in experts.values()]

    def choose(self, requests):
        return [self.choices[(r.doc_id or 0) % len(self.choices)] for r in requests]


def _evaluate(lm, tasks: list[str], limit: int) -> tuple[dict, float]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    t0 = time.perf_counter()
    out = simple_evaluate(
        model=lm,
        tasks=tasks,
        limit=limit,
        task_manager=TaskManager(include_path=str(tasks_dir())),
        log_samples=False,
        bootstrap_iters=0,
    )
    return out["results"], time.perf_counter() - t0


def _scores(results: dict) -> dict:
    return {
        t: {k: v for k, v in r.items() if isinstance(v, (int, float)) and "stderr" not in k}
        for t, r in results.items()
    }


def _make_experts(folder: Path, n: int, seed: int) -> list[Path]:
    lm = load_model()
    d = decompose(lm.model, TargetSpec("mlp"), model_id=lm.model_id, progress=False)
    g = torch.Generator().manual_seed(seed)
    paths = []
    for k in range(n):
        e = identity_expert(
            d, name=f"bench{k}", provenance={"kind": "random bench expert", "seed": seed}
        )
        e.params = {
            key: 1 + 0.2 * (torch.rand(v.shape, generator=g) - 0.5) for key, v in e.params.items()
        }
        paths.append(save_expert(e, folder / f"bench{k}"))
    return paths


def run(tasks, limit, parity_tasks, parity_limit, repeats, batch_size, seed) -> dict:
    from lm_eval.models.huggingface import HFLM

    from t2bench.assets import ensure_model

    t_start = time.perf_counter()
    path = str(ensure_model())
    common = {"batch_size": batch_size, "device": "cpu"}
    hf = HFLM(pretrained=path, dtype="float32", **common)
    record: dict = {"model": "smollm2-135m-instruct", "batch_size": batch_size}

    if parity_tasks:
        t2_plain = T2LM(**common)
        hf_res, hf_s = _evaluate(hf, parity_tasks, parity_limit)
        t2_res, t2_s = _evaluate(t2_plain, parity_tasks, parity_limit)
        record["parity"] = {
            "tasks": parity_tasks,
            "limit": parity_limit,
            "hf": _scores(hf_res),
            "t2_no_experts": _scores(t2_res),
            "identical": _scores(hf_res) == _scores(t2_res),
            "seconds": {"hf": hf_s, "t2": t2_s},
        }
        del t2_plain

    with tempfile.TemporaryDirectory() as tmp:
        experts = _make_experts(Path(tmp), 4, seed)
        fixed = T2LM(experts=str(experts[0]), dispatch="fixed:bench0", **common)
        times = {"hf": [], "t2_fixed": []}
        for _ in range(repeats):
            times["hf"].append(_evaluate(hf, tasks, limit)[1])
            fixed_res, t = _evaluate(fixed, tasks, limit)
            times["t2_fixed"].append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        record["throughput"] = {
            "tasks": tasks,
            "limit": limit,
            "repeats": repeats,
            "seconds": times,
            "median_seconds": med,
            "t2_fixed_over_hf_throughput": med["hf"] / med["t2_fixed"],
            "t2_fixed_scores": _scores(fixed_res),
            "t2": fixed.t2_summary(),
        }
        alt = T2LM(experts=";".join(map(str, experts)), **common)
        alt.dispatcher = AlternatingDispatch(alt.experts)
        alt_res, alt_s = _evaluate(alt, tasks, limit)
        summary = alt.t2_summary()
        record["alternating_4_experts"] = {
            "tasks": tasks,
            "limit": limit,
            "seconds": alt_s,
            "t2": summary,
            "one_composition_per_group": summary["weight_compositions"] == summary["groups"],
        }
    record["provenance"] = provenance(
        data_split="tasks as in tasks/README.md, first `limit` docs",
        seed=seed,
        wall_s=time.perf_counter() - t_start,
    )
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tasks", default="arc_challenge")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument(
        "--parity-tasks", default="arc_challenge,gsm8k", help="empty to skip the parity run"
    )
    p.add_argument("--parity-limit", type=int, default=50)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(results_path("bench")))
    a = p.parse_args(argv)
    split = lambda s: [t for t in s.split(",") if t]  # noqa: E731
    r = run(
        split(a.tasks),
        a.limit,
        split(a.parity_tasks),
        a.parity_limit,
        a.repeats,
        a.batch_size,
        a.seed,
    )
    if "parity" in r:
        print(f"parity (limit {a.parity_limit}): identical={r['parity']['identical']}")
        for t in r["parity"]["hf"]:
            print(f"  {t:28} hf {r['parity']['hf'][t]}  t2 {r['parity']['t2_no_experts'][t]}")
    th = r["throughput"]
    print(
        f"throughput t2(fixed expert)/hf on {a.tasks} limit {a.limit}: {th['t2_fixed_over_hf_throughput']:.3f} "
        f"(median s: {th['median_seconds']})"
    )
    alt = r["alternating_4_experts"]["t2"]
    print(
        f"alternating 4 experts: groups={alt['groups']} compositions={alt['weight_compositions']} "
        f"counts={alt['dispatch_counts']}"
    )
    print(f"written {new_record(Path(a.out), 'backend', r)}")


if __name__ == "__main__":
    main()
