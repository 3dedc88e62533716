"""A LLaVA-style vision-language model assembled locally: a small SigLIP vision tower, a
two-layer projector, and a real language model (by default the packaged SmolLM2-135M).

No vision-language weights install without a hub, so the vision tower and projector start from
seeded random weights; :mod:`t2bench.vlm.pretrain` then trains them on generated text-in-image
data (the language model stays frozen). The result is an ordinary ``transformers`` LLaVA folder
(``AutoModelForImageTextToText`` + ``AutoProcessor``), so lm-eval's multimodal path and the
``t2-vlm`` backend load it like any hub VLM.

Only the vision side is ours to ship: :func:`save_vision_weights` writes the vision tower and
projector (a few MB of safetensors, committed under ``results/vlm/``), and
:func:`assemble_vlm` rebuilds the full folder from them plus the packaged language model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from t2bench.core.io import replacing
from t2bench.errors import ConfigError

IMAGE_TOKEN = "<image>"
MARKER = "t2bench_vlm.json"
#: Parameter-name prefixes of the parts that are trained and shipped (the LM is not).
VISION_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.")


@dataclass(frozen=True)
class VisionConfig:
    """The vision tower (SigLIP encoder) and image geometry. 96 px / 16 px patches = 36 tokens."""

    image_size: int = 96
    patch_size: int = 16
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 3
    intermediate_size: int = 768
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def build_vlm(language_model=None, vision: VisionConfig = VisionConfig(), *, dtype=torch.float32):
    """(LlavaForConditionalGeneration, LlavaProcessor, language model id) with a seeded vision side.

    ``language_model`` is a packaged name, local folder or hub id (None: SmolLM2-135M-Instruct).
    The language model's weights are copied in unchanged; ``<image>`` is added to its
    vocabulary (its embedding row is never read: image features replace it).
    """
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    from t2bench.models import load_model

    lm = load_model(language_model, dtype=dtype)
    tok = lm.tokenizer
    if IMAGE_TOKEN not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_token_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    old_rows = lm.model.get_input_embeddings().weight.shape[0]
    if len(tok) > old_rows:
        lm.model.resize_token_embeddings(len(tok), mean_resizing=False)
        with torch.no_grad():  # deterministic: the mean of the old rows (never read anyway)
            emb = lm.model.get_input_embeddings().weight
            emb[old_rows:] = emb[:old_rows].mean(0)
    text_cfg = lm.model.config
    vision_cfg = SiglipVisionConfig(
        image_size=vision.image_size,
        patch_size=vision.patch_size,
        hidden_size=vision.hidden_size,
        num_hidden_layers=vision.num_layers,
        num_attention_heads=vision.num_heads,
        intermediate_size=vision.intermediate_size,
        vision_use_head=False,  # LLaVA reads patch features; the pooling head would be dead weight
    )
    cfg = LlavaConfig(
        vision_config=vision_cfg,
        text_config=text_cfg,
        image_token_index=image_token_id,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_seq_length=vision.image_tokens,
        projector_hidden_act="gelu",
        tie_word_embeddings=getattr(text_cfg, "tie_word_embeddings", False),
    )
    torch.manual_seed(vision.seed)
    model = LlavaForConditionalGeneration(cfg).to(dtype)
    # copy the language model in; vision tower and projector keep their seeded init
    model.model.language_model.load_state_dict(lm.model.model.state_dict(), strict=True)
    model.lm_head.load_state_dict(lm.model.lm_head.state_dict())
    if cfg.tie_word_embeddings:
        model.tie_weights()
    model.config.vocab_size = len(tok)
    model.eval()
    image_processor = SiglipImageProcessorPil(
        size={"height": vision.image_size, "width": vision.image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=vision.patch_size,
        vision_feature_select_strategy="full",
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=0,
    )
    return model, processor, lm.model_id


def vision_state(model) -> dict[str, torch.Tensor]:
    """The trainable vision side: vision tower and projector parameters, by name."""
    out = {
        n: p.detach().cpu().contiguous()
        for n, p in model.named_parameters()
        if n.startswith(VISION_PREFIXES)
    }
    if not out:
        raise ConfigError(
            f"{type(model).__name__} has no parameters under {VISION_PREFIXES}: not a LLaVA model"
        )
    return out


def save_vision_weights(model, vision: VisionConfig, path: Path, info: dict) -> Path:
    """Write the vision tower + projector as safetensors with the config in the header."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: results are never overwritten; pick a new path")
    meta = {"t2bench_vision": json.dumps(asdict(vision)), "t2bench_info": json.dumps(info)}
    with replacing(path) as tmp:
        save_file(vision_state(model), str(tmp), metadata=meta)
    return path


def read_vision_weights(path: Path) -> tuple[VisionConfig, dict, dict[str, torch.Tensor]]:
    """(vision config, info, tensors) from :func:`save_vision_weights`; clear errors otherwise."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"vision weights {path} not found: train them with `t2bench vlm pretrain` or pass "
            "vision_weights=None for an untrained (random) vision side"
        )
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        vision = VisionConfig(**json.loads(meta["t2bench_vision"]))
        info = json.loads(meta.get("t2bench_info", "{}"))
    except (KeyError, json.JSONDecodeError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a t2bench vision-weights file (missing or bad header: {exc})"
        ) from None
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ConfigError(
            f"cannot read vision weights {path} ({exc}); the file may be truncated, re-copy it"
        ) from None
    return vision, info, tensors


def load_vision_weights(model, tensors: dict[str, torch.Tensor]) -> None:
    own = vision_state(model)
    if set(own) != set(tensors) or any(own[k].shape != tensors[k].shape for k in own):
        raise ConfigError(
            "vision weights do not fit this model's vision tower/projector (other sizes or "
            "another language model width); assemble with the VisionConfig stored in the file"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in tensors.items():
            params[k].copy_(v.to(params[k]))


def fingerprint_folder(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(Path(folder).glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def assemble_vlm(
    out_dir: Path,
    *,
    language_model=None,
    vision_weights: Path | None = None,
    vision: VisionConfig | None = None,
) -> Path:
    """Write a LLaVA folder: the language model + vision side (trained weights or seeded init).

    Built in a hidden sibling folder and moved into place last, so an interrupted build never
    leaves a folder that looks complete. An existing complete folder is returned unchanged.
    """
    out_dir = Path(out_dir)
    if (out_dir / MARKER).is_file():
        return out_dir
    info: dict = {}
    tensors = None
    if vision_weights is not None:
        vision, info, tensors = read_vision_weights(Path(vision_weights))
    vision = vision or VisionConfig()
    model, processor, lm_id = build_vlm(language_model, vision)
    if tensors is not None:
        load_vision_weights(model, tensors)
    # an incomplete earlier build (no marker) is replaced
    with replacing(out_dir, folder=True) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        marker = {
            "language_model": lm_id,
            "vision": asdict(vision),
            "vision_weights": str(vision_weights) if vision_weights else None,
            "vision_info": info,
            "image_tokens": vision.image_tokens,
            "weights_sha256_16": fingerprint_folder(tmp),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return out_dir


def is_vlm_folder(path) -> bool:
    """True for a local folder whose config describes an image-text model."""
    cfg = Path(str(path)) / "config.json"
    if not cfg.is_file():
        return False
    d = json.loads(cfg.read_text())
    return "vision_config" in d
