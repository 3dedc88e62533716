"""Expert files: the vectors as safetensors, the metadata as JSON in the safetensors header.

One self-describing file per expert (readable by any safetensors tool). Loading validates
everything before a tensor is trusted: any problem raises ExpertFileError naming the file,
the problem and the fix; nothing else escapes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from t2bench.core.io import write_atomic
from t2bench.errors import ExpertFileError
from t2bench.svf.expert import PARAMETERISATIONS, Expert, ExpertMeta

FORMAT = "t2bench-expert"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
_MAX_HEADER = 100 * 1024 * 1024
_REQUIRED = {
    "base_model": str,
    "shape_fingerprint": str,
    "module_set": str,
    "layers": list,
    "shapes": dict,
    "parameterisation": str,
    "name": str,
    "provenance": dict,
}


def save_expert(expert: Expert, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``expert`` atomically; refuses to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_name(path.name + SUFFIX)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass overwrite=True (CLI: --overwrite) or pick a new name"
        )
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "t2bench": json.dumps(expert.meta.to_dict()),
    }
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in expert.params.items()
    }
    return write_atomic(path, st_save(tensors, metadata=meta))


def _fail(path: Path, problem: str, fix: str) -> ExpertFileError:
    return ExpertFileError(f"expert file {path}: {problem}. {fix}")


_REFETCH = "Re-copy or re-train the expert; the file may be truncated or damaged."


_NOT_SAFETENSORS = (
    "Pass an expert file written by t2bench (`t2bench train`, `t2bench expert`, "
    "t2bench.svf.save_expert)."
)


def _read_header(path: Path, data: bytes) -> dict:
    if len(data) < 8:
        raise _fail(
            path, f"only {len(data)} bytes: a truncated file or not a safetensors file", _REFETCH
        )
    # a safetensors file is an 8-byte header length, then a JSON object: '{' comes ninth
    if data[8:9] != b"{":
        raise _fail(
            path,
            f"not a safetensors file (it starts with {data[:12]!r}, not a safetensors header)",
            _NOT_SAFETENSORS,
        )
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER:
        raise _fail(path, f"header length {n} is not plausible (damaged header)", _REFETCH)
    if 8 + n > len(data):
        raise _fail(path, f"truncated: {len(data)} bytes, its header alone needs {8 + n}", _REFETCH)
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"header is not valid JSON ({exc})", _REFETCH) from None
    if not isinstance(header, dict):
        raise _fail(path, "header is not a JSON object", _REFETCH)
    return header


def _parse_meta(path: Path, header: dict) -> ExpertMeta:
    md = header.get("__metadata__")
    if not isinstance(md, dict) or md.get("format") != FORMAT:
        raise _fail(
            path,
            "not a t2bench expert (no t2bench metadata in the safetensors header)",
            "Save experts with t2bench.svf.save_expert or `t2bench train`.",
        )
    version = md.get("format_version", "")
    if not isinstance(version, str) or not version.isdigit():
        raise _fail(path, f"format_version {version!r} is not a number", _REFETCH)
    if int(version) > FORMAT_VERSION:
        raise _fail(
            path,
            f"format version {version} is newer than this t2bench reads ({FORMAT_VERSION})",
            "Upgrade t2bench.",
        )
    raw = md.get("t2bench")
    try:
        d = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError as exc:
        raise _fail(path, f"metadata is not valid JSON ({exc})", _REFETCH) from None
    if not isinstance(d, dict):
        raise _fail(path, "metadata is missing or not a JSON object", _REFETCH)
    for key, typ in _REQUIRED.items():
        if not isinstance(d.get(key), typ):
            raise _fail(
                path, f"metadata field {key!r} is missing or not a {typ.__name__}", _REFETCH
            )
    if d["parameterisation"] not in PARAMETERISATIONS:
        raise _fail(path, f"unknown parameterisation {d['parameterisation']!r}", _REFETCH)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in d["layers"]):
        raise _fail(path, "metadata field 'layers' must be a list of integers", _REFETCH)
    for k, shape in d["shapes"].items():
        if not (
            isinstance(shape, list)
            and len(shape) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
        ):
            raise _fail(
                path, f"shape of {k!r} must be two positive integers, got {shape!r}", _REFETCH
            )
    return ExpertMeta(**{k: d[k] for k in _REQUIRED})


def load_expert(path: str | Path, device: torch.device | str = "cpu") -> Expert:
    """Read and validate an expert file."""
    path = Path(path)
    if not path.is_file():
        raise ExpertFileError(
            f"no expert file at {path}. Check the path (experts are *.safetensors files written by t2bench)."
        )
    data = path.read_bytes()
    header = _read_header(path, data)
    meta = _parse_meta(path, header)
    ends = [
        t["data_offsets"][1]
        for k, t in header.items()
        if k != "__metadata__"
        and isinstance(t, dict)
        and isinstance(t.get("data_offsets"), list)
        and len(t["data_offsets"]) == 2
        and isinstance(t["data_offsets"][1], int)
    ]
    need = 8 + int.from_bytes(data[:8], "little") + max(ends, default=0)
    if len(data) < need:
        raise _fail(path, f"truncated: {len(data)} of the {need} bytes its header lists", _REFETCH)
    try:
        tensors = st_load(data)
    except Exception as exc:
        raise _fail(
            path, f"tensor data unreadable ({type(exc).__name__}: {exc})", _REFETCH
        ) from None
    if set(tensors) != set(meta.shapes):
        missing = sorted(set(meta.shapes) - set(tensors))[:4]
        extra = sorted(set(tensors) - set(meta.shapes))[:4]
        raise _fail(
            path,
            f"vectors do not match the metadata (missing {missing}, unexpected {extra})",
            _REFETCH,
        )
    params = {}
    for key in meta.shapes:  # metadata order is the canonical (layer, role) order
        v = tensors[key]
        rank = min(meta.shapes[key])
        if v.dtype != torch.float32 or v.dim() != 1 or v.numel() != rank:
            raise _fail(
                path,
                f"vector {key!r} is {v.dtype} {tuple(v.shape)}, expected float32 ({rank},)",
                _REFETCH,
            )
        if not bool(torch.isfinite(v).all()):
            raise _fail(path, f"vector {key!r} holds NaN or infinite values", _REFETCH)
        params[key] = v.to(device)
    if not params:
        raise _fail(path, "holds no vectors", _REFETCH)
    return Expert(params, meta)


def load_experts(
    paths: str | Path | list[str | Path], device: torch.device | str = "cpu"
) -> list[Expert]:
    """Experts from a list of files or a folder (sorted by name).

    A folder's own ``*.safetensors`` files, or, when it has none, the experts of the training
    runs inside it (``<run>/<run>.safetensors``, the layout of ``results/experts``).
    """
    if isinstance(paths, (str, Path)) and Path(paths).is_dir():
        folder = Path(paths)
        files = sorted(folder.glob(f"*{SUFFIX}")) or sorted(
            f for f in folder.glob(f"*/*{SUFFIX}") if f.stem == f.parent.name
        )
        if not files:
            raise ExpertFileError(
                f"folder {paths} holds no *{SUFFIX} expert files (nor training runs "
                f"<run>/<run>{SUFFIX}): pass an expert file or a folder of them"
            )
        paths = files
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    return [load_expert(p, device) for p in paths]
