"""Provenance recorded with every published number: code, machine, time."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import t2bench
from t2bench.core.io import utc_iso, write_new

#: Tracked paths whose changes do not make the code dirty: runs write their outputs there (a
#: sweep rewrites its record, a resumed run its log), and those outputs carry their own provenance.
OUTPUT_PATHS = ("results",)


def git_commit(repo: Path | None = None) -> str:
    """HEAD's sha, with '+dirty' when the working tree has uncommitted changes to tracked files
    outside :data:`OUTPUT_PATHS`."""
    cwd = repo or Path(__file__).resolve().parents[2]
    outputs = [f":(exclude){p}" for p in OUTPUT_PATHS]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "-uno", "--", ".", *outputs],
            cwd=cwd,
            capture_output=True,
            text=True,
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
        "created_utc": utc_iso(),
        "machine": machine(),
        **extra,
    }


def lm_eval_provenance(results_file: Path) -> dict:
    """Provenance of an lm-eval run, taken only from what lm-eval recorded in its results file."""
    d = json.loads(Path(results_file).read_text())
    cfg = d.get("config", {})
    return {
        "commit": d.get("git_hash"),
        "source": f"derived from lm-eval's {Path(results_file).name} by t2bench.core.provenance",
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


def write_lm_eval_provenance(
    output_path: Path, results_files=None, extra: dict | None = None
) -> list[Path]:
    """A ``provenance_*.json`` beside every lm-eval ``results_*.json`` under ``output_path``
    that has none, or only beside ``results_files`` (the files one run wrote: an unreadable
    results file of an earlier run is then not read), with the fields of ``extra`` added (what
    lm-eval does not record, such as the runner that executed model-written code). Written
    atomically."""
    written = []
    files = (
        results_files if results_files is not None else Path(output_path).rglob("results_*.json")
    )
    for results in sorted(map(Path, files)):
        side = results.with_name("provenance_" + results.name[len("results_") :])
        if not side.exists():
            record = lm_eval_provenance(results) | (extra or {})
            text = json.dumps(record, indent=2, default=str) + "\n"
            written.append(write_new(side, text))
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


def items_sha256(ids) -> str:
    """sha256 (16 hex digits) of a list of item or document ids, in the order given: names
    exactly which items a number was computed on without listing them."""
    import hashlib

    return hashlib.sha256(json.dumps([str(i) for i in ids]).encode()).hexdigest()[:16]


#: Sub-modules of an image-text model hashed on their own, so a record shows which vision side
#: it ran with as well as the whole model.
VISION_PARTS = ("vision_tower", "multi_modal_projector")


def weights_sha256(model) -> dict:
    """``state_sha256`` of the whole model under ``model``, plus the vision tower and projector
    apart where the model has them (VLMs)."""
    out = {"model": state_sha256(model)}
    for part in VISION_PARTS:
        names = [n for n, _ in model.named_modules() if n.endswith(part)]
        if names:
            out[part] = state_sha256(model, prefix=names[0] + ".")
    return out


# --------------------------------------------------------------------------- record audit

#: What every record under results/ must name, and the keys (anywhere in the record) that
#: record it, as different writers have spelled them.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "commit": ("commit", "git_hash"),
    "weights sha256": (
        "weights_sha256",
        "sha256_weights",
        "language_model_sha256",
    ),
    "seed": ("seed", "random_seed", "sample_seed", "seeds"),
    "split": ("data_split", "split", "splits", "test_split", "splits_used", "scored split"),
    "item ids": (
        "items_sha256",
        "item_uids",
        "item_ids",
        "uids",
        "uid",
        "doc_ids",
        "doc_id",
        "docs_sha256",
        "shot_doc_ids",
    ),
    "machine": ("machine", "pretty_env_info"),
    "wall time": ("wall_seconds", "wall_s", "total_evaluation_time_seconds", "seconds"),
}


def _keys(record, out: set[str]) -> set[str]:
    """Every dict key, at any depth, whose value is not empty."""
    if isinstance(record, dict):
        for k, v in record.items():
            if v not in (None, "", [], {}):
                out.add(k)
            _keys(v, out)
    elif isinstance(record, list):
        for v in record:
            _keys(v, out)
    return out


def provenance_gaps(record: dict) -> list[str]:
    """The fields of :data:`REQUIRED_FIELDS` that ``record`` does not carry under any of their
    known keys (a key with an empty value does not count).

    A check of key names only: it cannot tell whether the value is the one meant (a router's
    own ``seed`` counts as a seed, CEM's ``shot_doc_ids`` as item ids), so a record it passes
    still needs reading; a gap means the file itself lacks the field (a file beside it may
    hold it, as lm-eval's samples hold its document ids)."""
    present = _keys(record, set())
    return [name for name, keys in REQUIRED_FIELDS.items() if not present & set(keys)]


def audit(root: Path) -> dict[str, list[str]]:
    """:func:`provenance_gaps` of every JSON record under ``root`` (checkpoints and peft's
    ``adapter_config.json`` aside), by path relative to ``root``; records without gaps are left
    out."""
    out = {}
    for path in sorted(Path(root).rglob("*.json")):
        if "checkpoints" in path.parts or path.name == "adapter_config.json":
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            out[str(path.relative_to(root))] = ["unreadable"]
            continue
        gaps = provenance_gaps(record) if isinstance(record, dict) else ["not a JSON object"]
        if gaps:
            out[str(path.relative_to(root))] = gaps
    return out
