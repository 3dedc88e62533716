"""Evaluation in bf16 against fp32: items/s and the score difference on the same items.

    python -m t2bench.bench.eval_dtype [--task reasoning] [--n 200] [--expert PATH]
        [--difficulty default|mix] [--batch 32] [--rounds 1]

Scores one variant (the base model, or an SVF expert / peft adapter folder with ``--expert``)
on a seeded sample of the task's *test* split with greedy decoding, once with fp32 compute
and once with bf16 compute (the held-out comparison's ``compute_dtype``: adapters formed in
fp32, the model cast once), in alternating order over ``--rounds``. Reports each dtype's
items/s, the ratio bf16/fp32 (same process, same items), both accuracies and the paired
difference bf16 − fp32 with its 95% CI (Newcombe, McNemar p). Writes a JSON record with
provenance under results/bench/.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from t2bench.bench import write_with_provenance
from t2bench.core.io import results_path
from t2bench.core.stats import accuracy, paired_difference
from t2bench.generation import DEFAULT_NEW_TOKENS
from t2bench.models import model_fingerprint

DTYPES = ("float32", "bfloat16")


def measure(
    *,
    task: str = "reasoning",
    n: int = 200,
    expert: str | None = None,
    model: str | None = None,
    difficulty: str = "default",
    batch: int = 32,
    rounds: int = 1,
    seed: int = 0,
    max_new_tokens: int | None = None,
) -> dict:
    from t2bench.core.provenance import git_commit, items_sha256
    from t2bench.train.heldout import Variant, heldout_items, score_variant

    commit = git_commit()
    items, split = heldout_items(task, n, seed, difficulty)
    new_tokens = max_new_tokens or DEFAULT_NEW_TOKENS[task]
    if expert is None:
        variant = Variant("base", "base")
    else:
        path = Path(expert)
        variant = Variant(path.stem, "svf" if path.suffix == ".safetensors" else "peft", path)
    seconds = {d: 0.0 for d in DTYPES}
    scores: dict[str, list[bool]] = {}
    applied: dict[str, dict] = {}
    for r in range(rounds):
        for dtype in DTYPES if r % 2 == 0 else DTYPES[::-1]:
            applied[dtype] = {}
            t0 = time.perf_counter()
            with torch.no_grad():
                got = score_variant(
                    variant, model, items, task, new_tokens, batch, applied[dtype], dtype
                )
            seconds[dtype] += time.perf_counter() - t0
            if scores.setdefault(dtype, got) != got:
                raise RuntimeError(f"greedy {dtype} answers changed between rounds")
    rate = {d: rounds * len(items) / seconds[d] for d in DTYPES}
    fp, bf = ([int(x) for x in scores[d]] for d in DTYPES)
    return {
        "task": task,
        "variant": variant.name,
        "applied": applied,
        "n": len(items),
        "items_per_s": {d: round(v, 3) for d, v in rate.items()},
        "ratio_bf16_over_fp32": round(rate["bfloat16"] / rate["float32"], 3),
        "accuracy": {d: accuracy(s) for d, s in zip(DTYPES, (fp, bf), strict=True)},
        "difference_bf16_minus_fp32": paired_difference(fp, bf),
        "per_item": {"float32": fp, "bfloat16": bf},
        "note": "seconds include loading the model and forming the adapter once per dtype and "
        "round; greedy decoding, max_new_tokens as the task's default",
        "provenance_fields": dict(
            commit=commit,
            base_model=model or "smollm2-135m-instruct",
            weights_sha256={"model": model_fingerprint(model)["sha256_weights"]},
            data_split=split,
            items_sha256=items_sha256(it.uid for it in items),
            item_uids=[it.uid for it in items],
            seed=seed,
            max_new_tokens=new_tokens,
            batch=batch,
            rounds=rounds,
            wall_seconds=round(sum(seconds.values()), 1),
        ),
    }


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(prog="python -m t2bench.bench.eval_dtype", description=__doc__)
    p.add_argument("--task", default="reasoning")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--expert", default=None, help="SVF expert file or peft folder (default: base)")
    p.add_argument("--model", default=None)
    p.add_argument("--difficulty", default="default", choices=["default", "mix"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(results_path("bench")))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    rec = measure(
        task=args.task,
        n=args.n,
        expert=args.expert,
        model=args.model,
        difficulty=args.difficulty,
        batch=args.batch,
        rounds=args.rounds,
        seed=args.seed,
    )
    d = rec["difference_bf16_minus_fp32"]
    print(
        f"{rec['variant']} on {rec['n']} {rec['task']} test items: items/s fp32 "
        f"{rec['items_per_s']['float32']}, bf16 {rec['items_per_s']['bfloat16']} "
        f"(ratio {rec['ratio_bf16_over_fp32']}); accuracy fp32 "
        f"{rec['accuracy']['float32']['score']:.3f}, bf16 {rec['accuracy']['bfloat16']['score']:.3f}, "
        f"bf16 − fp32 {100 * d['diff']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] "
        f"points, p {d['p']:.3g}"
    )
    if not args.no_write:
        print(f"written: {write_with_provenance(args.out, 'eval-dtype', rec)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
