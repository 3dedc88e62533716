"""What a training run starts from: the base model (a causal LM, or an image-text model for VQA)
and its train / validation items (the packaged splits unless JSONL files replace them), and the
greedy validation score it selects checkpoints by."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from t2bench.data.splits import TrainItem, load_jsonl_items, load_splits
from t2bench.errors import ConfigError
from t2bench.models import load_model
from t2bench.train.config import TrainConfig
from t2bench.train.heldout import greedy_correct
from t2bench.vlm.models import load_vlm


def training_items(cfg: TrainConfig) -> tuple[list[TrainItem], list[TrainItem], dict]:
    """Train and validation items: the packaged splits unless JSONL files replace them."""
    packaged = (
        None
        if (cfg.data and cfg.valid_data)
        else load_splits(cfg.task, seed=cfg.seed, difficulty=cfg.difficulty)
    )
    train = load_jsonl_items(cfg.data, cfg.task) if cfg.data else packaged.train
    valid = load_jsonl_items(cfg.valid_data, cfg.task) if cfg.valid_data else packaged.valid
    if not train:
        raise ConfigError(f"no training items for task {cfg.task!r}: the dataset is empty")
    desc = dict(packaged.description) if packaged else {"task": cfg.task}
    if cfg.data:
        desc["train_override"] = {"file": str(cfg.data), "items": len(train)}
    if cfg.valid_data:
        desc["valid_override"] = {"file": str(cfg.valid_data), "items": len(valid)}
    return train, valid, desc


def difficulty_note(cfg: TrainConfig) -> str:
    """A note naming a non-default packaged split; empty for the default (as older records)."""
    return "" if cfg.difficulty == "default" else f" (difficulty={cfg.difficulty})"


def policy_correct(
    policy,
    tokenizer,
    items: list[TrainItem],
    task: str,
    *,
    max_new_tokens: int,
    batch: int,
    processor=None,
) -> list[bool]:
    """Greedy accuracy of the policy's adapted model on ``items`` (one bool per item)."""
    with policy.generating() as model:
        return greedy_correct(
            model,
            tokenizer,
            items,
            task,
            max_new_tokens=max_new_tokens,
            batch=batch,
            processor=processor,
        )


@dataclass
class Loaded:
    model: torch.nn.Module
    tokenizer: object
    processor: object | None
    model_id: str


def load_base(cfg: TrainConfig, device) -> Loaded:
    """The base model: an image-text model (with its processor) for VQA, else a causal LM."""
    if cfg.task == "vqa":
        model, processor, model_id = load_vlm(cfg.model, dtype=cfg.dtype, device=device)
        return Loaded(model, processor.tokenizer, processor, model_id)
    lm = load_model(cfg.model, dtype=cfg.dtype, device=device)
    return Loaded(lm.model, lm.tokenizer, None, lm.model_id)
