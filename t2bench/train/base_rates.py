"""Base rates: the packaged model's greedy accuracy per difficulty level on a math training or
validation split (never test). :data:`~t2bench.data.wordproblems.MATH_MIX` is tuned with it,
since a policy-gradient run only learns where its starting accuracy is neither 0 nor 1.

``python -m t2bench.train.base_rates --n 200 --out results/experts``"""

from __future__ import annotations

from pathlib import Path

from t2bench.core.io import new_record
from t2bench.core.stats import wilson
from t2bench.data.splits import MATH_DIFFICULTIES, item_level, load_splits
from t2bench.errors import ConfigError
from t2bench.generation import DEFAULT_NEW_TOKENS


def base_rates(
    model: str | None = None,
    *,
    difficulty: str = "mix",
    split: str = "valid",
    n: int = 64,
    batch: int = 16,
    max_new_tokens: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Greedy accuracy of ``model`` (None: the packaged base model) on the first ``n`` items
    of a math ``split``, per difficulty level, with the record's provenance.

    This is how :data:`MATH_MIX` is tuned: a policy-gradient run only learns when its starting
    accuracy is neither 0 nor 1. Tuning reads ``train`` or ``valid`` only, never ``test``.
    """
    import time

    from t2bench.core.provenance import git_commit, items_sha256, provenance, weights_sha256
    from t2bench.models import load_model
    from t2bench.train.heldout import greedy_correct

    if split not in ("train", "valid"):
        raise ConfigError(
            f"base rates are measured on split 'train' or 'valid', got {split!r}; the test "
            "split is for the final evaluation of an expert only"
        )
    commit = git_commit()  # the code that runs, read before anything else
    items = getattr(load_splits("math", seed=seed, difficulty=difficulty), split)
    if not 1 <= n <= len(items):
        raise ConfigError(f"n must be between 1 and {len(items)} (the {split} split), got {n}")
    items = items[:n]
    tokens = max_new_tokens or DEFAULT_NEW_TOKENS["math"]
    t0 = time.perf_counter()
    loaded = load_model(model)
    flags = greedy_correct(
        loaded.model,
        loaded.tokenizer,
        items,
        "math",
        max_new_tokens=tokens,
        batch=batch,
        progress=progress,
        desc=f"base rate {difficulty}",
    )

    def tally(got: list[bool]) -> dict:
        k = sum(got)
        return {
            "n": len(got),
            "correct": k,
            "accuracy": k / len(got),
            "wilson95": wilson(k, len(got)),
        }

    levels = {
        level: tally([f for i, f in zip(items, flags, strict=True) if item_level(i) == level])
        for level in dict.fromkeys(item_level(i) for i in items)
    }
    wall = round(time.perf_counter() - t0, 1)
    return {
        "task": "math",
        "difficulty": difficulty,
        "split": split,
        "greedy": True,
        "max_new_tokens": tokens,
        "overall": tally(flags),
        "levels": levels,
        "correct_by_uid": {i.uid: f for i, f in zip(items, flags, strict=True)},
        "provenance": provenance(
            commit=commit,
            base_model=loaded.model_id,
            seed=seed,
            data_split=f"math difficulty={difficulty}, first {n} items of the {split} split",
            weights_sha256=weights_sha256(loaded.model),
            data_items={"n": n, "items_sha256": items_sha256(i.uid for i in items)},
            wall_seconds=wall,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m t2bench.train.base_rates``: measure :func:`base_rates`, print each
    level's accuracy and, with ``--out``, write the record as a new JSON file there."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m t2bench.train.base_rates")
    p.add_argument("--model", default=None, help="model name or folder (default: packaged)")
    p.add_argument("--difficulty", default="mix", choices=MATH_DIFFICULTIES)
    p.add_argument("--split", default="valid", help="train or valid (never test)")
    p.add_argument("--n", type=int, default=64, help="first n items of the split (default 64)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's (96)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for the JSON record (e.g. results/experts)")
    args = p.parse_args(argv)
    record = base_rates(
        args.model,
        difficulty=args.difficulty,
        split=args.split,
        n=args.n,
        batch=args.batch,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        progress=True,
    )
    for level, r in [("overall", record["overall"]), *record["levels"].items()]:
        lo, hi = r["wilson95"]
        print(f"{level:>9}: {r['correct']}/{r['n']} = {r['accuracy']:.3f} (95% {lo:.3f}-{hi:.3f})")
    if args.out:
        path = new_record(Path(args.out), f"base-rate-math-{args.difficulty}", record)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
