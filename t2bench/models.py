"""Load base models and tokenizers: a packaged asset (the default), a local folder, or a hub id."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from t2bench import assets
from t2bench.errors import ConfigError, T2BenchError

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, or the best available one (cuda, then mps, then cpu)."""
    if device not in (None, "auto"):
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    """A torch dtype, or "auto" (the dtype the checkpoint was saved in)."""
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown dtype {dtype!r}: use auto or one of {', '.join(DTYPES)}"
        ) from None


@dataclass
class LoadedModel:
    """A model with its tokenizer and the id experts record as their base model."""

    model: torch.nn.Module
    tokenizer: object
    model_id: str
    path: str


def resolve_source(name_or_path: str | None) -> tuple[str, str]:
    """(model_id, path or hub id to load from) for an asset name, local folder or hub id."""
    if name_or_path is None:
        name_or_path = assets.DEFAULT_MODEL
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(
                f"{local} is a folder without config.json: not a Hugging Face model folder"
            )
        return str(local.resolve()), str(local)
    try:
        name = assets.resolve_name(name_or_path)
    except ConfigError:
        name = None
    if name is not None and assets.ASSETS[name].kind == "model":
        return name, str(assets.ensure_model(name))
    return name_or_path, name_or_path


def load_model(
    name_or_path: str | None = None,
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer, in eval mode, on ``device``.

    ``None`` loads the packaged default (SmolLM2-135M-Instruct), fetching it once if needed.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_id, source = resolve_source(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(dtype))
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise T2BenchError(
            f"cannot load model {name_or_path!r} ({exc}). It is neither a packaged model "
            f"({', '.join(n for n, a in assets.ASSETS.items() if a.kind == 'model')}) nor a local folder"
            + (
                ", and HF_HUB_OFFLINE is set."
                if offline
                else "; as a hub id it needs a reachable hub."
            )
        ) from None
    model.to(resolve_device(device)).eval()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, model_id, source)


def packaged_configs() -> dict[str, dict]:
    """Architecture configs shipped with t2bench (no weights), by name."""
    import json
    from importlib import resources

    out = {}
    for f in resources.files("t2bench.configs").iterdir():
        if f.name.endswith(".json"):
            out[f.name[: -len(".json")]] = json.loads(f.read_text())
    return out


def load_config(name_or_path: str | None = None):
    """A transformers config for a packaged name, hub id of a packaged config, local path or hub id.

    Needs no weights, so ``t2bench params meta-llama/Meta-Llama-3-8B-Instruct`` works offline.
    """
    import transformers

    name_or_path = name_or_path or assets.DEFAULT_MODEL
    path = Path(name_or_path).expanduser()
    if path.is_file() or (path / "config.json").is_file():
        return transformers.AutoConfig.from_pretrained(path.parent if path.is_file() else path)
    try:
        name_or_path = assets.resolve_name(name_or_path)
    except ConfigError:
        pass
    configs = packaged_configs()
    for name, d in configs.items():
        if name_or_path.lower() in (name, d["hub_id"].lower()):
            d = {k: v for k, v in d.items() if k != "hub_id"}
            return transformers.CONFIG_MAPPING[d.pop("model_type")](**d)
    try:
        return transformers.AutoConfig.from_pretrained(name_or_path)
    except OSError as exc:
        raise T2BenchError(
            f"no config for {name_or_path!r}: not a local folder, not one of the packaged configs "
            f"({', '.join(sorted(configs))}), and the hub could not provide it ({exc})."
        ) from None


def model_fingerprint(name: str | None) -> dict:
    """sha256 over every parameter tensor of a model (names, shapes and bytes), with its id."""
    from t2bench.core.provenance import state_sha256

    lm = load_model(name)
    return {"model_id": lm.model_id, "sha256_weights": state_sha256(lm.model), "path": lm.path}
