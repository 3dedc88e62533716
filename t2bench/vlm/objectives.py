"""The two pre-training objectives of the VLM's vision side (:mod:`t2bench.vlm.pretrain`):
stage A's auxiliary reading heads on the vision tower's pooled features (word, colour, digits,
and optionally a per-patch character head), and stage B's next-token loss on the answer with the
frozen language model in the loop; plus the freezing that keeps the language model bit-exact."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from t2bench.errors import ConfigError
from t2bench.tasks import textimages as ti
from t2bench.vlm.assemble import VISION_PREFIXES

#: The lm-eval prompt of ``t2vqa_text`` (tasks/t2vqa_text.yaml, ``doc_to_text``).
PROMPT = "<image>Question: {question}\nAnswer with a single word or number.\nAnswer:"
IGNORE = -100
NO_DIGIT = 10
DIGIT_HEADS = ("hundreds", "tens", "units")
HEAD_NAMES = ("word", "colour", *DIGIT_HEADS)
WEIGHT_DECAY = 0.01


def freeze_language_model(model) -> list[torch.nn.Parameter]:
    """requires_grad False on everything but the vision tower and projector; those are returned."""
    trainable = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(VISION_PREFIXES))
        if p.requires_grad:
            trainable.append(p)
    if not trainable:
        raise ConfigError(f"{type(model).__name__} has no parameters under {VISION_PREFIXES}")
    return trainable


def lm_digest(model) -> str:
    """sha256 (hex) over the names and bytes of every non-vision parameter."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if not name.startswith(VISION_PREFIXES):
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy())
    return h.hexdigest()


def vision_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The features LLaVA hands to the projector: ``hidden_states[vision_feature_layer]``."""
    out = model.model.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
    return out.hidden_states[model.config.vision_feature_layer]


class AuxHeads(nn.Module):
    """Stage-A heads (discarded after stage A): word, colour and digits on the mean-pooled vision
    features and, with ``chars``, a per-token character head (:func:`patch_char_labels`)."""

    def __init__(self, hidden_size: int, chars: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size)
        self.word = nn.Linear(hidden_size, len(ti.WORDS))
        self.colour = nn.Linear(hidden_size, len(ti.PALETTE))
        self.digits = nn.Linear(hidden_size, len(DIGIT_HEADS) * (NO_DIGIT + 1))
        self.chars = nn.Linear(hidden_size, 1 + len(CHARSET)) if chars else None

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``features``: ``(batch, image tokens, hidden)``."""
        x = self.norm(features.mean(dim=1))
        digits = self.digits(x).view(len(x), len(DIGIT_HEADS), NO_DIGIT + 1)
        out = {"word": self.word(x), "colour": self.colour(x)}
        out.update({name: digits[:, i] for i, name in enumerate(DIGIT_HEADS)})
        if self.chars is not None:
            out["chars"] = self.chars(self.norm(features))
        return out


_WORD_ID = {w: i for i, w in enumerate(ti.WORDS)}
#: Characters of the per-token head (case folded); class 0 is "no character centre here".
CHARSET = "".join(sorted(set("".join(ti.WORDS)) | set("0123456789")))
#: Loss weight of the "no character" class: about 6 of 7 patches hold no character centre, and
#: with weight 1 both the tower and a pixel-level probe settle on predicting "none" everywhere
#: (loss ~0.4, no letter identity after 1000 steps).
CHAR_NONE_WEIGHT = 0.05
_CHAR_ID = {c: i + 1 for i, c in enumerate(CHARSET)}
_COLOUR_ID = {c: i for i, c in enumerate(ti.PALETTE)}


def stage_a_labels(
    items: list[dict], char_grid: tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """Per-head class ids (``IGNORE`` where a head does not apply), from the drawn text; with
    ``char_grid = (image_size, patch_size)`` also ``chars`` (:func:`patch_char_labels`)."""
    labels: dict[str, list[int]] = {name: [] for name in HEAD_NAMES}
    for item in items:
        text = item["text"]
        labels["word"].append(_WORD_ID.get(text.lower(), IGNORE))
        labels["colour"].append(_COLOUR_ID[item["text_colour"]])
        if text.isdigit() and len(text) <= len(DIGIT_HEADS):
            padded = text.rjust(len(DIGIT_HEADS))
            digits = [NO_DIGIT if c == " " else int(c) for c in padded]
        else:
            digits = [IGNORE] * len(DIGIT_HEADS)
        for name, d in zip(DIGIT_HEADS, digits, strict=True):
            labels[name].append(d)
    out = {k: torch.tensor(v, dtype=torch.long) for k, v in labels.items()}
    if char_grid is not None:
        out["chars"] = patch_char_labels(items, *char_grid)
    return out


def patch_char_labels(items: list[dict], image_size: int, patch_size: int) -> torch.Tensor:
    """``(batch, patches)`` class ids for the per-token character head: the (case-folded)
    character whose centre lies in the patch, the one nearest the patch centre if several do;
    0 where none does. Patches in row-major order, as the vision tower emits its tokens."""
    grid = image_size // patch_size
    out = torch.zeros(len(items), grid * grid, dtype=torch.long)
    for b, item in enumerate(items):
        best: dict[int, float] = {}
        for ch, x, y in ti.char_centres(item):
            col = min(int(x // patch_size), grid - 1)
            row = min(int(y // patch_size), grid - 1)
            p = row * grid + col
            dist = (x - (col + 0.5) * patch_size) ** 2 + (y - (row + 0.5) * patch_size) ** 2
            if p not in best or dist < best[p]:
                best[p] = dist
                out[b, p] = _CHAR_ID[ch.lower()]
    return out


def pixel_values(processor, items: list[dict]) -> torch.Tensor:
    """The images as the processor prepares them for the model (what lm-eval feeds it)."""
    return processor.image_processor([it["image"] for it in items], return_tensors="pt")[
        "pixel_values"
    ]


def stage_a_loss(
    model, heads: AuxHeads, pixels: torch.Tensor, labels: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Summed cross-entropy of the heads that have labels in this batch, and each part."""
    logits = heads(vision_features(model, pixels))
    parts = {}
    if "chars" in labels:
        logits_c = logits["chars"].flatten(0, 1).float()
        weight = torch.ones(logits_c.shape[-1], device=logits_c.device)
        weight[0] = CHAR_NONE_WEIGHT
        parts["chars"] = F.cross_entropy(logits_c, labels["chars"].flatten(), weight=weight)
    for name in HEAD_NAMES:
        y = labels[name]
        keep = y != IGNORE
        if bool(keep.any()):
            parts[name] = F.cross_entropy(logits[name][keep].float(), y[keep])
    loss = torch.stack(list(parts.values())).sum()
    return loss, {k: float(v.detach()) for k, v in parts.items()}


@torch.no_grad()
def stage_a_accuracy(model, heads: AuxHeads, processor, items: list[dict]) -> dict[str, Any]:
    """Head accuracies (word, colour, whole number) on ``items``: a stage-A diagnostic."""
    grid = None if heads.chars is None else char_grid(model)
    labels = stage_a_labels(items, grid)
    pixels = pixel_values(processor, items).to(next(heads.parameters()).device)
    logits = heads(vision_features(model, pixels))
    pred = {k: v.argmax(-1).cpu() for k, v in logits.items()}
    out: dict[str, Any] = {"n": len(items)}
    if "chars" in labels:  # accuracy on the patches that hold a character centre
        keep = labels["chars"] != 0
        out["chars"] = mean_or_none((pred["chars"][keep] == labels["chars"][keep]).tolist())
    for name in ("word", "colour"):
        keep = labels[name] != IGNORE
        out[name] = mean_or_none((pred[name][keep] == labels[name][keep]).tolist())
    keep = labels["units"] != IGNORE
    hits = torch.ones_like(keep)
    for name in DIGIT_HEADS:
        hits &= pred[name] == labels[name]
    out["number"] = mean_or_none(hits[keep].tolist())
    return out


def char_grid(model) -> tuple[int, int]:
    vc = model.config.vision_config
    return vc.image_size, vc.patch_size


def mean_or_none(values: list) -> float | None:
    return sum(values) / len(values) if values else None


@contextmanager
def padding_side(tokenizer, side: str):
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = old


def prompt_text(item: dict) -> str:
    return PROMPT.format(question=item["question"])


def make_lm_batch(processor, items: list[dict]) -> dict[str, torch.Tensor]:
    """Stage-B batch: prompt (image tokens expanded) + ``" " + answer + "\\n"``, right-padded.

    ``labels`` equal ``input_ids`` on the answer and newline tokens and are ``IGNORE`` on the
    prompt, the image tokens and the padding. The prompt is tokenized alone, as at evaluation.
    """
    tok = processor.tokenizer
    with padding_side(tok, "right"):
        enc = processor(
            images=[it["image"] for it in items],
            text=[prompt_text(it) for it in items],
            return_tensors="pt",
            padding=True,
        )
    rows, labels = [], []
    for i, item in enumerate(items):
        n = int(enc["attention_mask"][i].sum())
        prompt = enc["input_ids"][i, :n].tolist()
        target = tok(" " + item["answer"] + "\n", add_special_tokens=False)["input_ids"]
        rows.append(prompt + target)
        labels.append([IGNORE] * len(prompt) + list(target))
    length = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    label_ids = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    for i, (r, lab) in enumerate(zip(rows, labels, strict=True)):
        input_ids[i, : len(r)] = torch.tensor(r)
        attention[i, : len(r)] = 1
        label_ids[i, : len(r)] = torch.tensor(lab)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "pixel_values": enc["pixel_values"],
        "labels": label_ids,
    }


def stage_b_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (answer) tokens.

    Equal to ``model(**batch).loss``, but the vocabulary projection is only computed at the
    labelled positions (a large saving with a 49k vocabulary and few answer tokens).
    """
    out = model.model(
        input_ids=batch["input_ids"],
        pixel_values=batch["pixel_values"],
        attention_mask=batch["attention_mask"],
        return_dict=True,
    )
    hidden = out.last_hidden_state[:, :-1]
    target = batch["labels"][:, 1:]
    keep = target != IGNORE
    logits = model.lm_head(hidden[keep])
    return F.cross_entropy(logits.float(), target[keep])


def stage_b_optimizer(model, lr_projector: float, lr_vision: float) -> torch.optim.AdamW:
    """AdamW with two groups: the projector (``lr_projector``) and the vision tower."""
    projector, tower = [], []
    for name, p in model.named_parameters():
        if name.startswith("model.multi_modal_projector."):
            projector.append(p)
        elif name.startswith("model.vision_tower."):
            tower.append(p)
    return torch.optim.AdamW(
        [
            {"params": projector, "lr": lr_projector, "base_lr": lr_projector},
            {"params": tower, "lr": lr_vision, "base_lr": lr_vision},
        ],
        weight_decay=WEIGHT_DECAY,
    )
