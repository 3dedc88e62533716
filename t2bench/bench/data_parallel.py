"""Data-parallel evaluation: the same lm-eval command in 1 and in 2 CPU processes.

    python -m t2bench.bench.data_parallel [--task arc_easy] [--limit 60] [--expert PATH]
        [--batch-size 8] [--no-threads-baseline] [--out results/bench]

Runs ``lm_eval run --model t2 --model_args experts=<expert>,dispatch=fixed:<its name>`` on the
first ``--limit`` documents of ``--task`` (the offline task folder), each in a fresh process:

* **1 process × 1 thread** (``OMP_NUM_THREADS=1``);
* **2 processes × 1 thread**: ``accelerate launch --multi_gpu --num_processes 2`` (torchrun;
  gloo on a machine without GPUs), the command the README gives;
* **1 process × 2 threads**: the same two cores used by threads instead (skipped with
  ``--no-threads-baseline``).

Recorded: the aggregate scores, each document's metrics and log-likelihoods against the
1-process run, the requests each process ran (``config.t2.data_parallel`` of lm-eval's results:
distinct requests, and what ran including lm-eval's padding copies), the wall time of each
command, lm-eval's own evaluation time, the model time of each process (``second_pass_seconds``:
the time inside the request methods), the children's CPU seconds, and the machine's load
average before and after each run, since other jobs may share the cores. Writes
``<out>/data-parallel-<UTC>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from t2bench.core.io import file_sha256, new_record, results_path
from t2bench.core.provenance import git_commit, provenance
from t2bench.core.tables import markdown_rows
from t2bench.tasks import tasks_dir

#: the published reasoning expert (results/experts/), under the results root
DEFAULT_EXPERT = ("experts", "reasoning-svf-pg", "reasoning-svf-pg.safetensors")
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(threads: int) -> dict:
    env = os.environ | {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        # this checkout first: an editable install elsewhere would otherwise be imported
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
    }
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def lm_eval_args(a, expert: Path, name: str, out: Path) -> list[str]:
    return [
        "run",
        "--model",
        "t2",
        "--model_args",
        f"experts={expert},dispatch=fixed:{name},dtype=float32",
        "--tasks",
        a.task,
        "--limit",
        str(a.limit),
        "--batch_size",
        str(a.batch_size),
        "--include_path",
        str(tasks_dir()),
        "--output_path",
        str(out),
        "--log_samples",
        "--seed",
        str(a.seed),
    ]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_one(label: str, processes: int, threads: int, args: list[str], out: Path) -> dict:
    """One lm-eval command; its results, samples, timings and the load around it."""
    if processes == 1:
        cmd = [sys.executable, "-m", "lm_eval", *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
        cmd += ["--num_processes", str(processes), "--num_machines", "1"]
        cmd += ["--num_cpu_threads_per_process", str(threads), "--mixed_precision", "no"]
        cmd += ["--dynamo_backend", "no", "--main_process_port", str(_free_port())]
        cmd += ["-m", "lm_eval", *args]
    load_before, cpu0, t0 = os.getloadavg(), _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu, load_after = _children_cpu() - cpu0, os.getloadavg()
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    (results_file,) = sorted(out.rglob("results_*.json"))
    results = json.loads(results_file.read_text())
    (samples_file,) = sorted(out.rglob("samples_*.jsonl"))
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    t2 = results["config"]["t2"]
    per_rank = t2["data_parallel"]["per_rank"]
    return {
        "label": label,
        "processes": processes,
        "threads_per_process": threads,
        "command": " ".join(Path(c).name if c == sys.executable else c for c in cmd),
        "wall_seconds": round(wall, 2),
        "lm_eval_seconds": round(float(results["total_evaluation_time_seconds"]), 2),
        "model_seconds_per_rank": [r["second_pass_seconds"] for r in per_rank],
        "children_cpu_seconds": round(cpu, 2),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "scores": {
            task: {k: v for k, v in r.items() if isinstance(v, (int, float)) and "stderr" not in k}
            for task, r in results["results"].items()
        },
        "requests_per_rank": [r["requests"] for r in per_rank],
        "instances_per_rank": [r["instances"] for r in per_rank],
        "dispatch_counts": t2["dispatch_counts"],
        "weights_sha256": t2["weights_sha256"],
        "_samples": samples,
    }


def _expert(args: dict) -> str | None:
    """The expert t2 logged as a request's last argument (lm-eval writes the arguments of
    request i as ``{"gen_args_i": {"arg_0": ..., "arg_1": ...}}``)."""
    last = args[f"arg_{len(args) - 1}"]
    return last.get("t2_expert") if isinstance(last, dict) else None


def _per_doc(samples: list[dict]) -> dict[int, dict]:
    out = {}
    for s in samples:
        out[int(s["doc_id"])] = {
            "acc": s.get("acc"),
            "acc_norm": s.get("acc_norm"),
            # lm-eval writes every response as text: one (log-likelihood, is_greedy) per choice
            "ll": [float(r[0]) for r in s["filtered_resps"]],
            "expert": [_expert(args) for args in s["arguments"].values()],
        }
    return out


def compare(base: dict, other: dict) -> dict:
    """``other``'s documents against ``base``'s: the same ids, metrics and experts, and the
    largest log-likelihood difference (batches hold other documents in each process)."""
    a, b = _per_doc(base["_samples"]), _per_doc(other["_samples"])
    same_ids = sorted(a) == sorted(b)
    docs = sorted(set(a) & set(b))
    metric_diffs = [
        d for d in docs if (a[d]["acc"], a[d]["acc_norm"]) != (b[d]["acc"], b[d]["acc_norm"])
    ]
    expert_diffs = [d for d in docs if a[d]["expert"] != b[d]["expert"]]
    dll = [abs(x - y) for d in docs for x, y in zip(a[d]["ll"], b[d]["ll"], strict=True)]
    return {
        "same_doc_ids": same_ids,
        "docs": len(docs),
        "docs_with_other_metrics": metric_diffs,
        "docs_with_other_expert": expert_diffs,
        "max_abs_loglikelihood_diff": max(dll) if dll else None,
        "identical_scores": same_ids and not metric_diffs and base["scores"] == other["scores"],
    }


def measure(a) -> dict:
    from t2bench.svf.files import load_expert

    expert = Path(a.expert).resolve()
    name = load_expert(expert).meta.name
    runs = [("1 process x 1 thread", 1, 1), ("2 processes x 1 thread", 2, 1)]
    if a.threads_baseline:
        runs.append(("1 process x 2 threads", 1, 2))
    record: dict = {"task": a.task, "limit": a.limit, "batch_size": a.batch_size}
    record["expert"] = {"path": str(expert), "name": name, "sha256": file_sha256(expert)}
    done = []
    with tempfile.TemporaryDirectory(prefix="t2-dp-") as tmp:
        for i, (label, procs, threads) in enumerate(runs):
            out = Path(tmp) / f"run{i}"
            print(f"[data-parallel] {label} ...", flush=True)
            r = run_one(label, procs, threads, lm_eval_args(a, expert, name, out), out)
            print(
                f"[data-parallel] {label}: {r['wall_seconds']} s, requests per rank "
                f"{r['requests_per_rank']}, scores {r['scores']}",
                flush=True,
            )
            done.append(r)
    base = done[0]
    for r in done[1:]:
        r["against_1_process_1_thread"] = compare(base, r)
    record["doc_ids"] = sorted(_per_doc(base["_samples"]))
    for r in done:
        r.pop("_samples")
    two = done[1]
    record["runs"] = done
    record["speedup_2_processes_over_1"] = {
        "wall": round(base["wall_seconds"] / two["wall_seconds"], 3),
        "lm_eval": round(base["lm_eval_seconds"] / two["lm_eval_seconds"], 3),
        # the part that is split: the slowest process's time inside the request methods
        "model": round(max(base["model_seconds_per_rank"]) / max(two["model_seconds_per_rank"]), 3),
    }
    return record


def markdown(r: dict) -> str:
    runs = r["runs"]
    head = ["run", "wall s", "lm-eval s", "model s per rank", "CPU s", "load before → after"]
    head += ["distinct requests per rank", "run incl. padding", "acc", "acc_norm", "vs 1×1"]
    rows = []
    for x in runs:
        s = x["scores"][r["task"]]
        cmp = x.get("against_1_process_1_thread")
        same = "—" if cmp is None else ("identical" if cmp["identical_scores"] else "DIFFERENT")
        if cmp is not None:
            same += f" (max Δll {cmp['max_abs_loglikelihood_diff']:.1e})"
        rows.append(
            [
                x["label"],
                f"{x['wall_seconds']:.1f}",
                f"{x['lm_eval_seconds']:.1f}",
                " / ".join(f"{v:.1f}" for v in x["model_seconds_per_rank"]),
                f"{x['children_cpu_seconds']:.1f}",
                f"{x['loadavg_before'][0]:.2f} → {x['loadavg_after'][0]:.2f}",
                " / ".join(map(str, x["instances_per_rank"])),
                " / ".join(map(str, x["requests_per_rank"])),
                f"{s.get('acc,none', float('nan')):.4f}",
                f"{s.get('acc_norm,none', float('nan')):.4f}",
                same,
            ]
        )
    sp = r["speedup_2_processes_over_1"]
    lines = [
        f"## Data-parallel t2: {r['task']}, first {r['limit']} documents, fixed expert "
        f"{r['expert']['name']}",
        "",
        f"`{runs[1]['command']}` against the same command in one process; batch size "
        f"{r['batch_size']}, float32, {r['provenance']['machine']['cpu_count']} CPU cores. "
        "Load = 1-minute load average (other jobs on the machine count).",
        "",
        *markdown_rows(head, rows, right={1, 2, 4}),
        "",
        f"Speed-up of 2 processes over 1 (1 thread each): wall {sp['wall']}×, lm-eval's "
        f"evaluation time {sp['lm_eval']}×, model time of the slowest process {sp['model']}×.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", default="arc_easy")
    p.add_argument("--limit", type=int, default=60)
    p.add_argument("--expert", default=str(results_path(*DEFAULT_EXPERT)))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="lm-eval's --seed")
    p.add_argument("--no-threads-baseline", dest="threads_baseline", action="store_false")
    p.add_argument("--out", default=str(results_path("bench")))
    a = p.parse_args(argv)
    commit = git_commit()  # the code that runs, read before anything can change the tree
    t0 = time.perf_counter()
    record = measure(a)
    record["args"] = vars(a)
    record["provenance"] = provenance(
        seed=a.seed,
        data_split=f"{a.task} evaluated split (tasks/{a.task}.yaml), first {a.limit} documents",
        model="smollm2-135m-instruct (packaged default)",
        measured_commit=commit,
        wall_seconds=round(time.perf_counter() - t0, 1),
    )
    path = new_record(Path(a.out), "data-parallel", record)
    text = markdown(record)
    path.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"record: {path}")
    identical = all(x["against_1_process_1_thread"]["identical_scores"] for x in record["runs"][1:])
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
