"""The training run's JSONL log: written by the main process only, cut back to the checkpoint's
step on resume, and read again for what it says (whether the base model was already validated,
how many steps had no learning signal)."""

from __future__ import annotations

import json
from pathlib import Path

from t2bench.core.run import JsonlLog
from t2bench.train.config import TrainConfig


class RunLog:
    """The run's JSONL log, cut on resume to the records up to the checkpoint's step; only the
    main process writes it."""

    def __init__(self, log: JsonlLog, resume_step: int, enabled: bool):
        self.log, self.enabled = log, enabled
        if enabled:
            self.log.keep(lambda rec: rec.get("step", 0) <= resume_step)

    def write(self, record: dict) -> None:
        if self.enabled:
            self.log.append(record)


def has_start_record(log_path: Path) -> bool:
    """Whether the log already holds the base model's step-0 validation (``eval_at_start``)."""
    if not log_path.exists():
        return False
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line).get("step") == 0:
                return True
        except json.JSONDecodeError:
            continue
    return False


def no_signal(log_path: Path, selected_step: int, cfg: TrainConfig) -> dict | None:
    """How many steps up to ``selected_step`` had no learning signal, from the run's log (which
    holds every step, also across resumptions); ``flag`` when all of them had none. None for
    next-token prediction, which has no advantages."""
    if cfg.objective != "pg":
        return None
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    upto = [r for r in records if 0 < r.get("step", 0) <= selected_step]  # step 0: the base
    known = [r for r in upto if "no_signal" in r]  # logs of older code lack the field
    without = sum(bool(r["no_signal"]) for r in known)
    return {
        "steps_without_signal": without,
        "of": len(upto),
        "selected_step": selected_step,
        "unknown": len(upto) - len(known),
        "flag": bool(known) and without == len(upto),
    }
