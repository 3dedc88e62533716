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


def lm_eval_provenance(results_file: Path) -> dict:
    """Provenance of an lm-eval run, taken only from what lm-eval recorded in its results file."""
    d = json.loads(Path(results_file).read_text())
    cfg = d.get("config", {})
    return {
        "commit": d.get("git_hash"),
        "source": f"derived from lm-eval's {Path(results_file).name} by t2bench.report.provenance",
        "date": d.get("date"),
        "wall_s": d.get("total_evaluation_time_seconds"),
        "model": cfg.get("model"),
        "model_args": cfg.get("model_args"),
        "t2": cfg.get("t2"),
        "limit": cfg.get("limit"),
        "seed": {
            k: cfg.get(k) for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")
        },
        "data_split": {
            task: {k: c.get(k) for k in ("test_split", "fewshot_split", "num_fewshot", "metadata")}
            for task, c in d.get("configs", {}).items()
        },
        "n_samples": d.get("n-samples"),
        "machine": {
            "env": d.get("pretty_env_info"),
            "transformers": d.get("transformers_version"),
            "lm_eval": d.get("lm_eval_version"),
        },
    }


def write_lm_eval_provenance(output_path: Path) -> list[Path]:
    """A ``provenance_*.json`` beside every lm-eval ``results_*.json`` under ``output_path`` that has none."""
    written = []
    for results in sorted(Path(output_path).rglob("results_*.json")):
        side = results.with_name("provenance_" + results.name[len("results_") :])
        if not side.exists():
            side.write_text(json.dumps(lm_eval_provenance(results), indent=2, default=str) + "\n")
            written.append(side)
    return written


def state_sha256(module, prefix: str = "") -> str:
    """sha256 (16 hex digits) over a module's state tensors whose names start with ``prefix``:
    names, shapes, dtypes and bytes, in name order."""
    import hashlib

    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for pname, p in sorted(module.state_dict().items()):
            if not pname.startswith(prefix):
                continue
            h.update(f"{pname}:{tuple(p.shape)}:{p.dtype}".encode())
            h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def model_fingerprint(name: str | None) -> dict:
    """sha256 over every parameter tensor of a model (names, shapes and bytes), with its id."""
    from t2bench.models import load_model

    lm = load_model(name)
    return {"model_id": lm.model_id, "sha256_weights": state_sha256(lm.model), "path": lm.path}
