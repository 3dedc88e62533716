"""Behaviour unchanged by a refactor: the same runs on the real packaged model at an older commit
and at this checkout, compared number for number.

``python -m t2bench.bench.refactor_equivalence --before COMMIT [--table1] [--out results/bench]``

1. **Data splits**: every task's packaged train / valid / test split, as the sha256 of its item
   uids, at both commits.
2. **Training**: one short smoke RL run (``--recipe``, ``--steps``) at both commits, and a third
   at this checkout killed with SIGKILL once its checkpoint ``--kill-after`` is written, then
   rerun to the end. The exported experts must match bit for bit (max |Δ| = 0) and the logs must
   hold the same records (wall-time fields aside).
3. ``--table1``: the smoke ablation profile's Table 1 at both commits; every evaluation's
   per-document scores (``evaluations.jsonl``) must match.

The older commit runs from a temporary git worktree, imported first through ``PYTHONPATH``
(the editable install would otherwise import this checkout). The record, with provenance, goes
to ``<out>/refactor-equivalence-<UTC stamp>.json``; the exit status is 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from t2bench.core.io import new_record, results_path
from t2bench.core.provenance import git_commit, provenance

#: log fields that measure time, not behaviour
TIMING = {"seconds", "tokens_per_s"}

#: prints {task: {part: [n, sha256 of its uids in order]}} at either layout of the split module
#: (the hash is computed here, the same at both commits)
_SPLITS_SNIPPET = """
import hashlib, json
try:
    from t2bench.data.splits import load_splits
except ImportError:
    from t2bench.train.data import load_splits
out = {}
for task, extra in [(t, {}) for t in ("reasoning", "math", "code", "classifier")] + [
    ("math", {"difficulty": "mix"})
]:
    s = load_splits(task, seed=0, **extra)
    task = "-".join([task, *extra.values()])
    out[task] = {}
    for part in ("train", "valid", "test"):
        items = getattr(s, part, None)
        if items is not None:
            uids = "\\n".join(i.uid for i in items).encode()
            out[task][part] = [len(items), hashlib.sha256(uids).hexdigest()[:16]]
print(json.dumps(out))
"""


def _env(code_root: Path) -> dict:
    """Environment that imports t2bench from ``code_root`` first, offline."""
    return os.environ | {
        "PYTHONPATH": str(code_root),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _train_cmd(recipe: str, steps: int, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "t2bench.train",
        "--recipe",
        recipe,
        "--profile",
        "smoke",
        "--steps",
        str(steps),
        "--eval-every",
        "2",
        "--output-dir",
        str(out),
        "--no-progress",
    ]


def _run(cmd: list[str], code_root: Path, log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        subprocess.run(
            cmd, check=True, env=_env(code_root), cwd=code_root, stdout=fh, stderr=subprocess.STDOUT
        )
    return round(time.perf_counter() - t0, 1)


def _run_killed(cmd: list[str], code_root: Path, log: Path, marker: Path) -> dict:
    """Start ``cmd``, SIGKILL it once ``marker`` exists, then run it again to the end."""
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        proc = subprocess.Popen(
            cmd, env=_env(code_root), cwd=code_root, stdout=fh, stderr=subprocess.STDOUT
        )
        while not marker.exists() and proc.poll() is None:
            time.sleep(0.2)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    if not killed:
        raise RuntimeError(f"the run ended before {marker} appeared: nothing was killed")
    resume_s = _run(cmd, code_root, log)
    return {
        "killed_after": marker.parent.name,  # the checkpoint folder
        "seconds": round(time.perf_counter() - t0, 1),
        "resume_seconds": resume_s,
    }


def _expert(folder: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(p for p in folder.glob("*.safetensors"))
    if len(files) != 1:
        raise RuntimeError(f"expected one exported expert in {folder}, found {files}")
    return load_file(str(files[0]))


def _max_abs(a: dict, b: dict) -> float | None:
    if set(a) != set(b):
        return None
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _log(folder: Path) -> list[dict]:
    lines = (folder / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines if x]


def _evaluations(folder: Path) -> dict:
    recs = [json.loads(x) for x in (folder / "evaluations.jsonl").read_text().splitlines() if x]
    return {r["key"]: r.get("scores") for r in recs}


def _ablation_folder(root: Path) -> Path:
    runs = [p for p in root.iterdir() if p.is_dir()]
    if len(runs) != 1:
        raise RuntimeError(f"expected one ablation run folder in {root}, found {runs}")
    return runs[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the older commit (before the refactor)")
    ap.add_argument("--recipe", default="reasoning-svf-pg")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--kill-after", type=int, default=2, help="checkpoint step to kill after")
    ap.add_argument("--table1", action="store_true", help="also compare smoke Table 1")
    ap.add_argument("--out", default=str(results_path("bench")))
    args = ap.parse_args(argv)
    here = Path(__file__).resolve().parents[2]
    before = subprocess.run(
        ["git", "-C", str(here), "rev-parse", args.before],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    after = git_commit(here)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="t2-equiv-") as tmp:
        tmp = Path(tmp)
        old = tmp / "before-code"
        subprocess.run(
            ["git", "-C", str(here), "worktree", "add", "--detach", str(old), before],
            check=True,
            capture_output=True,
        )
        try:
            record = _compare(args, here, old, tmp)
        finally:
            subprocess.run(
                ["git", "-C", str(here), "worktree", "remove", "--force", str(old)],
                capture_output=True,
            )
    record["provenance"] = provenance(
        commit=after, before_commit=before, wall_seconds=round(time.perf_counter() - t0, 1)
    )
    path = new_record(args.out, "refactor-equivalence", record)
    print(json.dumps({k: v for k, v in record.items() if k != "provenance"}, indent=1))
    print(f"wrote {path}")
    return 0 if record["identical"] else 1


def _compare(args, here: Path, old: Path, tmp: Path) -> dict:
    logs = tmp / "logs.txt"
    splits = {}
    for name, root in (("before", old), ("after", here)):
        out = subprocess.run(
            [sys.executable, "-c", _SPLITS_SNIPPET],
            env=_env(root),
            cwd=root,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise RuntimeError(f"reading the splits at {name} failed:\n{out.stderr[-2000:]}")
        splits[name] = json.loads(out.stdout.strip().splitlines()[-1])
    runs = {name: tmp / name for name in ("before", "after", "resumed")}
    seconds = {
        "before": _run(_train_cmd(args.recipe, args.steps, runs["before"]), old, logs),
        "after": _run(_train_cmd(args.recipe, args.steps, runs["after"]), here, logs),
    }
    marker = runs["resumed"] / "checkpoints" / f"step-{args.kill_after:06d}" / "state.json"
    resumed = _run_killed(_train_cmd(args.recipe, args.steps, runs["resumed"]), here, logs, marker)
    experts = {name: _expert(folder) for name, folder in runs.items()}
    log = {name: _log(folder) for name, folder in runs.items()}
    training = {
        "recipe": args.recipe,
        "profile": "smoke",
        "steps": args.steps,
        "seconds": seconds,
        "killed_and_resumed": resumed,
        "max_abs_dz_before_vs_after": _max_abs(experts["before"], experts["after"]),
        "max_abs_dz_after_vs_resumed": _max_abs(experts["after"], experts["resumed"]),
        "logs_equal_before_vs_after": log["before"] == log["after"],
        "logs_equal_after_vs_resumed": log["after"] == log["resumed"],
        "valid_accuracy": [r.get("valid_accuracy") for r in log["after"] if "valid_accuracy" in r],
    }
    record = {
        "splits_equal": splits["before"] == splits["after"],
        "splits": splits["after"],
        "training": training,
    }
    same = (
        record["splits_equal"]
        and training["max_abs_dz_before_vs_after"] == 0.0
        and training["max_abs_dz_after_vs_resumed"] == 0.0
        and training["logs_equal_before_vs_after"]
        and training["logs_equal_after_vs_resumed"]
    )
    if args.table1:
        evals = {}
        for name, root in (("before", old), ("after", here)):
            out = tmp / f"table1-{name}"
            cmd = [
                sys.executable,
                "-m",
                "t2bench.cli",
                "ablations",
                "--profile",
                "smoke",
                "--only",
                "table1",
                "--out",
                str(out),
                "--allow-dirty",
            ]
            seconds[f"table1_{name}"] = _run(cmd, root, logs)
            evals[name] = _evaluations(_ablation_folder(out))
        record["table1"] = {
            "evaluations": len(evals["after"]),
            "scores_equal": evals["before"] == evals["after"],
            "differing_keys": sorted(
                k
                for k in set(evals["before"]) | set(evals["after"])
                if evals["before"].get(k) != evals["after"].get(k)
            ),
        }
        same = same and record["table1"]["scores_equal"]
    record["identical"] = bool(same)
    return record


if __name__ == "__main__":
    sys.exit(main())
