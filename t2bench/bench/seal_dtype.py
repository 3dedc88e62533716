"""SEAL's knowledge conditions in bf16 against fp32: seconds and the score difference on the
same passages.

    python -m t2bench.bench.seal_dtype [--n 8] [--source fictional] [--split train]
        [--conditions passage,self-edit] [--methods lora,svf] [--steps 8]

Runs each condition × inner update of the SEAL knowledge table (self-edits written greedily by
the base model, one inner update per passage, its questions asked closed-book, the update
undone) once with the model in fp32 and once cast to bf16 (as the ablations' ``compute_dtype``
does: LoRA and z trained in fp32, SVF's change to W formed in bf16), alternating which dtype
goes first. Reports seconds per dtype (self-edits + updates + questions; and the inner updates
alone), the ratio fp32/bf16, each accuracy, and the paired difference bf16 − fp32 per row and
pooled over rows, with 95% intervals that resample whole passages. Passages come from the
``train`` split by default: no evaluation passage is used to decide how the table computes.
Writes a JSON record with provenance under results/bench/.
"""

from __future__ import annotations

import argparse
import time

import torch

from t2bench.bench import write_with_provenance
from t2bench.core.io import results_path
from t2bench.core.provenance import git_commit
from t2bench.core.stats import accuracy, clustered_difference
from t2bench.models import load_model, model_fingerprint, resolve_dtype
from t2bench.seal import experiment
from t2bench.seal.data import load_passages
from t2bench.seal.inner import InnerConfig

DTYPES = ("float32", "bfloat16")


def _run_row(model_path, passages, condition, method, steps, dtype, seed) -> dict:
    loaded = load_model(model_path)
    if dtype != "float32":
        loaded.model.to(resolve_dtype(dtype))
    t0 = time.perf_counter()
    with torch.no_grad():
        edits = experiment.edit_sequences(
            loaded.model,
            loaded.tokenizer,
            passages,
            condition,
            variant="implications",
            seed=seed,
        )
    r = experiment.evaluate_condition(
        loaded.model,
        loaded.tokenizer,
        passages,
        edits,
        InnerConfig(method=method, steps=steps),
        model_id=loaded.model_id,
    )
    inner = [x["inner"] for x in r["passages"] if "inner" in x]
    return {
        "seconds": round(time.perf_counter() - t0, 2),
        "inner_seconds": round(sum(x["seconds"] for x in inner), 2),
        "updated": len(inner),
        "diverged": sum(1 for x in r["passages"] if "diverged" in x),
        "clusters": [x["uid"] for x in r["records"]],
        "scores": [float(x["contains"]) for x in r["records"]],
    }


def measure(
    *,
    n: int = 8,
    source: str = "fictional",
    split: str = "train",
    conditions: tuple[str, ...] = ("passage", "self-edit"),
    methods: tuple[str, ...] = ("lora", "svf"),
    steps: int = 8,
    model: str | None = None,
    seed: int = 0,
    bootstrap_iters: int = 10_000,
) -> dict:
    commit = git_commit()
    passages = load_passages(source, split, n=n, seed=seed)
    rows, pooled = [], {d: [] for d in DTYPES}
    clusters: list[str] = []
    i = 0
    for condition in conditions:
        for method in methods:
            got = {}
            for dtype in DTYPES if i % 2 == 0 else DTYPES[::-1]:
                got[dtype] = _run_row(model, passages, condition, method, steps, dtype, seed)
            i += 1
            fp, bf = got["float32"], got["bfloat16"]
            if fp["clusters"] != bf["clusters"]:
                raise RuntimeError("the two dtypes scored different questions")
            for d in DTYPES:
                pooled[d] += got[d]["scores"]
            # a row's questions are its own units: tag the passage with the row when pooling
            clusters += [f"{condition}|{method}|{c}" for c in fp["clusters"]]
            rows.append(
                {
                    "condition": condition,
                    "method": method,
                    "seconds": {d: got[d]["seconds"] for d in DTYPES},
                    "inner_seconds": {d: got[d]["inner_seconds"] for d in DTYPES},
                    "ratio_fp32_over_bf16": round(fp["seconds"] / bf["seconds"], 3),
                    "inner_ratio_fp32_over_bf16": round(
                        fp["inner_seconds"] / max(bf["inner_seconds"], 1e-9), 3
                    ),
                    "updated": {d: got[d]["updated"] for d in DTYPES},
                    "diverged": {d: got[d]["diverged"] for d in DTYPES},
                    "accuracy": {d: accuracy(got[d]["scores"]) for d in DTYPES},
                    "difference_bf16_minus_fp32": clustered_difference(
                        fp["scores"], bf["scores"], fp["clusters"], bootstrap_iters, seed
                    ),
                    "per_question": {d: got[d]["scores"] for d in DTYPES},
                    "passages_of_questions": fp["clusters"],
                }
            )
    total = {d: sum(r["seconds"][d] for r in rows) for d in DTYPES}
    inner_total = {d: sum(r["inner_seconds"][d] for r in rows) for d in DTYPES}
    return {
        "n_passages": len(passages),
        "questions_per_row": len(rows[0]["per_question"]["float32"]),
        "rows": rows,
        "seconds": {d: round(v, 2) for d, v in total.items()},
        "ratio_fp32_over_bf16": round(total["float32"] / total["bfloat16"], 3),
        "inner_ratio_fp32_over_bf16": round(
            inner_total["float32"] / max(inner_total["bfloat16"], 1e-9), 3
        ),
        "pooled_accuracy": {d: accuracy(pooled[d]) for d in DTYPES},
        "pooled_difference_bf16_minus_fp32": clustered_difference(
            pooled["float32"], pooled["bfloat16"], clusters, bootstrap_iters, seed
        ),
        "note": "seconds per row: self-edit generation + inner updates + closed-book questions, "
        "model loading excluded; inner seconds: the updates alone. Pooled intervals resample "
        "(row, passage) clusters.",
        "provenance_fields": dict(
            commit=commit,
            base_model=model or "smollm2-135m-instruct",
            weights_sha256={"model": model_fingerprint(model)["sha256_weights"]},
            data_split=f"SEAL {source} {split} passages (not evaluation passages)",
            item_uids=[p.uid for p in passages],
            seed=seed,
            inner_steps=steps,
            wall_seconds=round(sum(total.values()), 1),
        ),
    }


def _split(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m t2bench.bench.seal_dtype", description=__doc__)
    p.add_argument("--n", type=int, default=8, help="passages")
    p.add_argument("--source", default="fictional", choices=["fictional", "squad"])
    p.add_argument("--split", default="train", choices=["train", "eval"])
    p.add_argument("--conditions", default="passage,self-edit")
    p.add_argument("--methods", default="lora,svf")
    p.add_argument("--steps", type=int, default=8, help="inner update steps (the table's)")
    p.add_argument("--model", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(results_path("bench")))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    rec = measure(
        n=args.n,
        source=args.source,
        split=args.split,
        conditions=_split(args.conditions),
        methods=_split(args.methods),
        steps=args.steps,
        model=args.model,
        seed=args.seed,
    )
    for r in rec["rows"]:
        d = r["difference_bf16_minus_fp32"]
        print(
            f"{r['condition']:>9} {r['method']:>4}: s fp32 {r['seconds']['float32']}, bf16 "
            f"{r['seconds']['bfloat16']} (×{r['ratio_fp32_over_bf16']}); accuracy fp32 "
            f"{r['accuracy']['float32']['score']:.3f}, bf16 {r['accuracy']['bfloat16']['score']:.3f}"
            f", bf16 − fp32 {100 * d['diff']:+.1f} [{100 * d['ci_low']:+.1f}, "
            f"{100 * d['ci_high']:+.1f}]"
        )
    d = rec["pooled_difference_bf16_minus_fp32"]
    print(
        f"all rows: fp32/bf16 seconds ×{rec['ratio_fp32_over_bf16']} (inner updates "
        f"×{rec['inner_ratio_fp32_over_bf16']}); bf16 − fp32 {100 * d['diff']:+.1f} "
        f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] points"
    )
    if not args.no_write:
        print(f"written: {write_with_provenance(args.out, 'seal-dtype', rec)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
