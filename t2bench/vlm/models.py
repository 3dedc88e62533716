"""Which image-text model a name means, and loading it.

Names:

``smollm2-vlm`` (the default)
    The packaged SmolLM2-135M-Instruct with the vision tower + projector trained by
    ``t2bench vlm pretrain`` (the default recipe) and committed under ``results/vlm/``
    (:func:`vision_weights_path`).
    Assembled once into the asset cache (``$T2BENCH_HOME/models/smollm2-vlm-<sha>``).
``smollm2-vlm-untrained``
    The same with the seeded, untrained vision side (the "before projector training" model).
a local folder
    Any transformers image-text model folder (``config.json`` with a ``vision_config``).
anything else
    A hub id (needs a reachable hub), loaded with ``AutoModelForImageTextToText``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from t2bench.core.io import file_sha256, results_path
from t2bench.errors import ConfigError, T2BenchError

#: The pre-training run (a recipe of :mod:`t2bench.vlm.recipes`) whose committed vision side the
#: default ``smollm2-vlm`` model uses: ``<results root>/vlm/<name>/vision.safetensors``.
DEFAULT_PRETRAIN = "smollm2-vlm-chars-b500"
DEFAULT_VLM = "smollm2-vlm"
UNTRAINED_VLM = "smollm2-vlm-untrained"


def vision_weights_path() -> Path:
    """$T2BENCH_VLM_WEIGHTS, else the default pre-training run's weights under the results root
    (``results/`` of the working directory unless $T2BENCH_RESULTS moves it)."""
    default = results_path("vlm", DEFAULT_PRETRAIN, "vision.safetensors")
    return Path(os.environ.get("T2BENCH_VLM_WEIGHTS") or default)


def resolve_vlm(name_or_path: str | None) -> tuple[str, str]:
    """(model_id, folder or hub id) for a VLM name; assembles packaged ones on first use."""
    from t2bench.assets import cache_root
    from t2bench.vlm.assemble import VisionConfig, assemble_vlm, is_vlm_folder

    name = name_or_path or DEFAULT_VLM
    if name == DEFAULT_VLM:
        weights = vision_weights_path()
        if not weights.is_file():
            raise ConfigError(
                f"the trained vision side of {DEFAULT_VLM} is missing ({weights}). Train it with "
                f"`nox -s vlm` (or `t2bench vlm pretrain`), run from the checkout that holds it "
                f"(or set T2BENCH_RESULTS to its results folder), set T2BENCH_VLM_WEIGHTS, or use "
                f"pretrained={UNTRAINED_VLM}"
            )
        folder = cache_root() / "models" / f"{DEFAULT_VLM}-{file_sha256(weights)[:12]}"
        return DEFAULT_VLM, str(assemble_vlm(folder, vision_weights=weights))
    if name == UNTRAINED_VLM:
        tag = hashlib.sha256(json.dumps(asdict(VisionConfig())).encode()).hexdigest()[:12]
        folder = cache_root() / "models" / f"{UNTRAINED_VLM}-{tag}"
        return UNTRAINED_VLM, str(assemble_vlm(folder))
    local = Path(name).expanduser()
    if local.is_dir():
        if not is_vlm_folder(local):
            raise ConfigError(
                f"{local} is a text-only model (its config.json has no vision_config): image tasks "
                "need an image-text model. Use --model t2 for text tasks, or pass a VLM folder"
            )
        return str(local.resolve()), str(local)
    from t2bench.assets import ASSETS, resolve_name

    try:
        asset = resolve_name(name)
    except ConfigError:
        asset = None
    if asset is not None and ASSETS[asset].kind == "model":
        raise ConfigError(
            f"{name} is a text-only model: image tasks need an image-text model. Use "
            f"pretrained={DEFAULT_VLM} (SmolLM2 with a trained vision tower), or --model t2 for "
            "text tasks"
        )
    return name, name


def load_vlm(name_or_path: str | None = None, *, dtype="float32", device=None):
    """(model, processor, model_id) in eval mode on ``device``."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from t2bench.models import resolve_device, resolve_dtype

    model_id, source = resolve_vlm(name_or_path)
    try:
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=resolve_dtype(dtype))
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise T2BenchError(
            f"cannot load image-text model {name_or_path!r} ({exc}); pass {DEFAULT_VLM}, a local "
            "VLM folder, or a hub id with a reachable hub"
        ) from None
    model.to(resolve_device(device)).eval()
    tok = processor.tokenizer
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return model, processor, model_id
