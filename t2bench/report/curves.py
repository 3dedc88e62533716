"""Learning curves of training runs, drawn from each run's ``log.jsonl``.

One PNG per run: the train reward per step (with a running mean over ``window`` steps) and the
share of samples with zero advantage on the left axis, greedy validation accuracy at each
evaluation on the right panel. Next-token-prediction runs plot their loss instead of reward.
"""

from __future__ import annotations

import json
from pathlib import Path

from t2bench.core.tables import figure


def read_log(run: Path) -> list[dict]:
    path = Path(run) / "log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def running_mean(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def curve_png(run: Path, out: Path, title: str | None = None, window: int = 5) -> Path:
    """Draw one run's curves into ``out`` (a PNG); returns ``out``."""
    log = read_log(run)
    fig = figure(9.0, 3.4)
    left, right = fig.subplots(1, 2)
    trained = [r for r in log if r["step"] > 0]  # step 0: the base model's validation only
    steps = [r["step"] for r in trained]
    if any("reward" in r for r in trained):
        reward = [r.get("reward", float("nan")) for r in trained]
        left.plot(steps, reward, color="0.7", lw=0.8, label="reward (step)")
        left.plot(
            steps, running_mean(reward, window), color="C0", label=f"reward ({window}-step mean)"
        )
        zero = [r.get("zero_advantage_share") for r in trained]
        if all(z is not None for z in zero):
            left.plot(steps, zero, color="C3", lw=0.8, ls="--", label="zero-advantage share")
        left.set_ylabel("train reward")
    else:
        left.plot(steps, [r["loss"] for r in trained], color="C0", label="NTP loss")
        left.set_ylabel("train loss")
    left.set_xlabel("optimizer step")
    left.legend(fontsize=7)
    evals = [(r["step"], r["valid_accuracy"]) for r in log if "valid_accuracy" in r]
    if evals:
        right.plot(*zip(*evals, strict=True), marker="o", color="C1")
        n = next(r["valid_n"] for r in log if "valid_n" in r)
        right.set_ylabel(f"greedy valid accuracy (n={n})")
    right.set_xlabel("optimizer step")
    right.set_ylim(0, 1)
    fig.suptitle(title or Path(run).name, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def sweep_curves(folder: Path) -> list[Path]:
    """A PNG per finished or running grid point of a sweep folder, under ``folder/curves/``."""
    folder = Path(folder)
    return [
        curve_png(run, folder / "curves" / f"{run.name}.png", f"{folder.name} {run.name}")
        for run in sorted(p for p in folder.iterdir() if (p / "log.jsonl").exists())
    ]
