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

from t2bench.core import run
from t2bench.core.io import load_tensors, save_tensors
from t2bench.train.config import RESUMABLE_FIELDS, TrainConfig

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


def run_folder(out: Path) -> run.RunFolder:
    """The training run in ``out``: checkpoints ``checkpoints/step-000012/``, in step order."""
    return run.RunFolder(
        out,
        "training run",
        checkpoint_ok=lambda name: name.startswith(_PREFIX),
        checkpoint_order=lambda p: int(p.name[len(_PREFIX) :]),
    )


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
    extra = {"provenance": provenance} if provenance else {}

    def write(folder: Path) -> None:
        # save_tensors, not safetensors' save_file: a full disk is an OSError naming the cause
        save_tensors(
            folder / "trainable.safetensors", {k: v.contiguous() for k, v in trainable.items()}
        )
        opt_tensors, opt_meta = optimizer_tensors(optimizer)
        save_tensors(folder / "optimizer.safetensors", opt_tensors)
        (folder / "optimizer.json").write_text(json.dumps(opt_meta | extra))
        if best is not None:
            save_tensors(folder / "best.safetensors", {k: v.contiguous() for k, v in best.items()})

    payload = {"state": state.__dict__, "config": config.to_dict(), **extra}
    return run_folder(out).save_checkpoint(f"{_PREFIX}{state.step:06d}", payload, write, keep=keep)


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (temporary leftovers are ignored)."""
    return run_folder(out).checkpoints()


def load_checkpoint(path: Path) -> Checkpoint:
    """Read one checkpoint folder; a damaged one raises DamagedCheckpointError naming the file."""
    try:
        payload = run.RunFolder.read_state(path)
        trainable = load_tensors(path / "trainable.safetensors")
        opt_tensors = load_tensors(path / "optimizer.safetensors")
        opt_meta = json.loads((path / "optimizer.json").read_text())
        best_file = path / "best.safetensors"
        best = load_tensors(best_file) if best_file.exists() else None
        state_dict = optimizer_state_dict(opt_tensors, opt_meta)
        return Checkpoint(
            path=path,
            state=RunState(**payload["state"]),
            config=payload["config"],
            trainable=trainable,
            optimizer=state_dict,
            best=best,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise run.DamagedCheckpointError(path, exc) from None


def latest_checkpoint(
    out: Path, config: TrainConfig, *, set_aside: bool = True
) -> Checkpoint | None:
    """The newest checkpoint of ``out`` that loads, checked against ``config``; None for a new
    run. A damaged newest checkpoint is set aside for the one before it (see
    :meth:`t2bench.core.run.RunFolder.latest_checkpoint`)."""
    ckpt = run_folder(out).latest_checkpoint(load_checkpoint, set_aside=set_aside)
    if ckpt is None:
        return None
    # both through TrainConfig, so fields added since the checkpoint compare as their defaults
    saved = TrainConfig.from_dict(ckpt.config).to_dict()
    run_folder(out).check_settings(config.to_dict(), saved, free=RESUMABLE_FIELDS)
    return ckpt
