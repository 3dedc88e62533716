"""Resumable checkpoints: safetensors for tensors, JSON for the rest, written atomically.

A checkpoint is a folder ``checkpoints/step-00012/`` holding the adapter (``trainable``), the
optimizer moments (``optimizer``), the best-on-validation adapter so far (``best``, if any)
and ``state.json`` (step, scheduler, early-stopping counters, config). It is built under a
temporary name and renamed into place, and ``state.json`` is written last, so a run killed at
any moment (kill -9 included) leaves either a complete checkpoint or none: resuming uses the
newest complete one. No pickles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from t2bench.core import run
from t2bench.core.io import replacing
from t2bench.errors import ConfigError
from t2bench.train.config import TrainConfig

STATE = "state.json"
_PREFIX = "step-"


@dataclass
class RunState:
    """Loop counters that a resumed run continues from."""

    step: int = 0  # optimizer steps completed
    best_score: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    stopped: str | None = None
    wall_seconds: float = 0.0  # summed over all sessions of the run (resumes included)
    steps_without_signal: int = 0  # consecutive steps up to now whose advantages were all 0
    scheduler: dict = field(default_factory=dict)


@dataclass
class Checkpoint:
    path: Path
    state: RunState
    config: dict
    trainable: dict[str, torch.Tensor]
    optimizer: dict
    best: dict[str, torch.Tensor] | None


def checkpoint_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state as safetensors-ready tensors plus JSON-ready scalars and groups."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"scalars": scalars, "param_groups": sd["param_groups"]}


def optimizer_state_dict(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """The inverse of :func:`optimizer_tensors`: a state dict for ``optimizer.load_state_dict``."""
    sd: dict = {"state": {}, "param_groups": meta["param_groups"]}
    for source in (tensors, meta["scalars"]):
        for key, value in source.items():
            idx, name = key.split(".", 1)
            sd["state"].setdefault(int(idx), {})[name] = value
    return sd


def save_checkpoint(
    out: Path,
    state: RunState,
    config: TrainConfig,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    best: dict[str, torch.Tensor] | None,
    keep: int = 2,
    provenance: dict | None = None,
) -> Path:
    """Write checkpoint ``step-<state.step>`` atomically and prune all but the newest ``keep``.

    ``provenance`` (commit, machine, seed, split, items, base weights, wall time so far) goes
    into both JSON files: a committed checkpoint of an unfinished run is a record too."""
    final = checkpoint_dir(out) / f"{_PREFIX}{state.step:06d}"
    # a rerun of the same step after a crash writes the same content and replaces it
    with replacing(final, folder=True) as tmp:
        trainable = {k: v.contiguous() for k, v in trainable.items()}
        save_file(trainable, str(tmp / "trainable.safetensors"))
        opt_tensors, opt_meta = optimizer_tensors(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        extra = {"provenance": provenance} if provenance else {}
        (tmp / "optimizer.json").write_text(json.dumps(opt_meta | extra))
        if best is not None:
            best = {k: v.contiguous() for k, v in best.items()}
            save_file(best, str(tmp / "best.safetensors"))
        payload = {"state": state.__dict__, "config": config.to_dict(), **extra}
        (tmp / STATE).write_text(json.dumps(payload, indent=1))
    run.prune_checkpoints(complete_checkpoints(out), keep)
    return final


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (temporary leftovers are ignored)."""
    return run.complete_checkpoints(
        checkpoint_dir(out),
        STATE,
        name_ok=lambda name: name.startswith(_PREFIX),
        order=lambda p: int(p.name[len(_PREFIX) :]),
    )


def load_checkpoint(path: Path) -> Checkpoint:
    """Read one checkpoint folder; a damaged one raises ConfigError naming the file."""
    try:
        payload = json.loads((path / STATE).read_text())
        trainable = load_file(str(path / "trainable.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
        opt_meta = json.loads((path / "optimizer.json").read_text())
        best_file = path / "best.safetensors"
        best = load_file(str(best_file)) if best_file.exists() else None
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"checkpoint {path} is damaged ({exc}); delete that folder to resume from the one "
            "before it"
        ) from None
    state_dict = optimizer_state_dict(opt_tensors, opt_meta)
    return Checkpoint(
        path=path,
        state=RunState(**payload["state"]),
        config=payload["config"],
        trainable=trainable,
        optimizer=state_dict,
        best=best,
    )


def latest_checkpoint(out: Path, config: TrainConfig) -> Checkpoint | None:
    """The newest complete checkpoint of ``out``, checked against ``config``; None for a new run."""
    done = complete_checkpoints(out)
    if not done:
        return None
    ckpt = load_checkpoint(done[-1])
    saved = TrainConfig.from_dict(ckpt.config)
    diff = config.differences(saved)
    if diff:
        shown = ", ".join(f"{k}: now {a!r}, checkpoint {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ConfigError(
            f"{out} holds a checkpoint of a different run ({shown}). Resume with the same "
            "settings, or pick a new output_dir to start a new run."
        )
    return ckpt
