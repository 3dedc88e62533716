"""Provenance recorded with every published number: code, machine, time."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path

import t2bench


def git_commit(repo: Path | None = None) -> str:
    """HEAD's sha, with '+dirty' when the working tree has uncommitted changes to tracked files."""
    cwd = repo or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "-uno"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def provenance(**extra) -> dict:
    """Commit, machine and UTC time, plus caller fields (model fingerprint, split, seed, wall time)."""
    return {
        "commit": git_commit(),
        "t2bench": t2bench.__version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        **extra,
    }


def write_new(folder: Path, stem: str, payload: dict) -> Path:
    """Write ``payload`` as JSON to a new file under ``folder``; existing files are never replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{stem}-{stamp}.json"
    n = 1
    while path.exists():
        path = folder / f"{stem}-{stamp}-{n}.json"
        n += 1
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
