"""1 process vs 2 processes: the same SVF expert from the same global batch and seed.

Trains the same short RL run (``--steps`` optimizer steps, global batch ``--global-batch``) once
with one process (micro-batches accumulate) and once with two CPU processes launched by
``torch.distributed.run`` (gloo, one micro-batch each), both with one thread per process, and
records max |Δz| between the two exported experts, with provenance, under ``results/bench/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

from t2bench.core.io import new_record, results_path
from t2bench.core.provenance import provenance


def _run(cmd: list[str], log: Path) -> float:
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        subprocess.run(cmd, check=True, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0


def max_abs_difference(a: dict, b: dict) -> float:
    if set(a) != set(b):
        raise ValueError("the two experts adapt different matrices")
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None)
    p.add_argument("--task", default="reasoning")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--global-batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(results_path("bench")))
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)

    args = [
        "--task", a.task, "--steps", str(a.steps), "--global-batch", str(a.global_batch),
        "--micro-batch", str(a.global_batch // 2), "--eval-every", "0", "--max-new-tokens", "8",
        "--kl-coef", "0.1", "--seed", str(a.seed), "--no-progress",
    ]  # fmt: skip
    if a.model:
        args += ["--model", a.model]
    train = ["-m", "t2bench.train", *args]
    with tempfile.TemporaryDirectory(prefix="t2bench-parity-") as tmp:
        work = Path(tmp)
        s1 = _run([sys.executable, *train, "--output-dir", str(work / "p1")], work / "p1.log")
        dist = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        s2 = _run([*dist, *train, "--output-dir", str(work / "p2")], work / "p2.log")
        runs = {}
        for d in ("p1", "p2"):
            summary = json.loads((work / d / "summary.json").read_text())
            runs[d] = {
                "processes": summary["processes"],
                "vectors": load_file(summary["artifact"]),
                "log": [json.loads(x) for x in (work / d / "log.jsonl").read_text().splitlines()],
                "model": summary["provenance"]["base_model"],
                "fingerprint": summary["provenance"].get("weight_fingerprint"),
            }
    one, two = runs["p1"], runs["p2"]
    diff = max_abs_difference(one["vectors"], two["vectors"])
    moved = max(float((v - 1).abs().max()) for v in one["vectors"].values())
    record = {
        "max_abs_dz_1proc_vs_2proc": diff,
        "max_abs_z_minus_1": moved,
        "processes": [one["processes"], two["processes"]],
        "losses": [[r["loss"] for r in one["log"]], [r["loss"] for r in two["log"]]],
        "rewards": [[r["reward"] for r in one["log"]], [r["reward"] for r in two["log"]]],
        "seconds": {"1proc": round(s1, 1), "2proc": round(s2, 1)},
        "provenance": provenance(
            base_model=one["model"],
            weight_fingerprint=one["fingerprint"],
            seed=a.seed,
            data_split=f"{a.task} train split",
            steps=a.steps,
            global_batch=a.global_batch,
            wall_seconds=round(s1 + s2, 1),
        ),
    }
    print(f"1 process vs 2 processes after {a.steps} steps: max |Δz| = {diff:.3g} "
          f"(max |z − 1| = {moved:.3g}); {s1:.0f} s and {s2:.0f} s")  # fmt: skip
    if not a.no_write:
        print("written:", new_record(Path(a.out), "train-parity", record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
