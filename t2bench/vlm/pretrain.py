"""Pre-train the vision side of the assembled VLM so it reads text (LLaVA stage-1 style).

The language model of :func:`t2bench.vlm.assemble.build_vlm` stays frozen, bit for bit; only the
vision tower and the projector (:data:`~t2bench.vlm.assemble.VISION_PREFIXES`) are trained, on
the ``train`` split of :mod:`t2bench.tasks.textimages`, in two stages:

Stage A (cheap, no language model in the loop)
    The vision tower with temporary auxiliary heads (:class:`AuxHeads`) on the mean over image
    tokens of the features LLaVA feeds to the projector (``hidden_states[vision_feature_layer]``):
    the word drawn (one of :data:`~t2bench.tasks.textimages.WORDS`), the text colour (one of
    :data:`~t2bench.tasks.textimages.PALETTE`) and, for numbers, three digit heads (hundreds, tens,
    units; 11 classes, class 10 = "no digit"). Labels come from the *drawn text*, so the word or
    number behind a colour question supervises the word/digit heads too; a head is ignored
    (-100) on items whose text is of the other kind. Summed cross-entropy, AdamW. The heads are
    thrown away afterwards: this stage only teaches the tower to read.

Stage B (language model in the loop)
    Next-token loss on the answer only: the lm-eval prompt (:data:`PROMPT`, through the processor
    so ``<image>`` expands to the image tokens) followed by ``" " + answer + "\\n"``; prompt, image
    and padding positions are labelled -100 (:func:`make_lm_batch`). The projector learns at
    ``lr_projector``, the vision tower at the smaller ``lr_vision``.

Selection: greedy generation (:func:`generate_answers`, the task's prompt, stop at a newline,
cleaned like the task) on the first ``eval_n`` ``valid`` items, before training (the random
vision side) and every ``eval_every`` stage-B steps; the best state on valid (ties go to the later
step) is what :func:`pretrain` writes. The ``test`` split is never read for training or selection
(only :func:`t2bench.tasks.textimages.fingerprint`, recorded with the data, hashes its first pixels,
exactly as the lm-eval task records it).

Resumable: a checkpoint (safetensors for tensors, JSON for the rest, no pickles; built under a
temporary name, renamed into place, ``state.json`` last) every ``checkpoint_every`` steps of each
stage and at the end of stage A. The data order is a pure function of ``(seed, stage, step)`` and
the learning rate of the step number, so a killed run resumed from its newest checkpoint ends
with the same weights as an uninterrupted one. A non-finite loss or gradient stops the run with
:class:`NonFiniteLossError`; nothing of that step is saved, the last good checkpoint stays.

Outputs in ``output_dir``: ``vision.safetensors`` (:func:`~t2bench.vlm.assemble.save_vision_weights`,
header info = the summary without the loss curves and eval details) and ``summary.json``; the
checkpoints are removed once both are written. A finished ``output_dir`` is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from t2bench.assets.store import sha256_file
from t2bench.core.io import replacing, write_json_atomic
from t2bench.core.run import (
    NonFiniteError,
    complete_checkpoints,
    config_differences,
    epoch_order,
    finite_or_raise,
    prune_checkpoints,
)
from t2bench.errors import ConfigError, T2BenchError
from t2bench.models import resolve_device
from t2bench.tasks import textimages as ti
from t2bench.tasks.textimages import TextImageConfig
from t2bench.train.checkpoint import optimizer_state_dict, optimizer_tensors
from t2bench.vlm.assemble import (
    VISION_PREFIXES,
    VisionConfig,
    build_vlm,
    load_vision_weights,
    read_vision_weights,
    save_vision_weights,
    vision_state,
)

__all__ = [
    "CHARSET",
    "PROMPT",
    "AuxHeads",
    "NonFiniteLossError",
    "PretrainConfig",
    "clean_answer",
    "evaluate",
    "freeze_language_model",
    "generate_answers",
    "lm_digest",
    "make_lm_batch",
    "patch_char_labels",
    "pretrain",
    "stage_a_labels",
    "stage_a_loss",
    "stage_b_loss",
    "stage_b_optimizer",
]

#: The lm-eval prompt of ``t2vqa_text`` (tasks/t2vqa_text.yaml, ``doc_to_text``).
PROMPT = "<image>Question: {question}\nAnswer with a single word or number.\nAnswer:"
IGNORE = -100
NO_DIGIT = 10
DIGIT_HEADS = ("hundreds", "tens", "units")
HEAD_NAMES = ("word", "colour", *DIGIT_HEADS)
#: Learning-rate schedule (both stages): linear warm-up over this fraction of the steps, then
#: cosine decay to ``MIN_LR_FRACTION`` of the peak. A pure function of the step number.
WARMUP_FRACTION = 0.05
MIN_LR_FRACTION = 0.1
WEIGHT_DECAY = 0.01
GRAD_CLIP = 1.0
SUMMARY = "summary.json"
VISION_FILE = "vision.safetensors"
CHECKPOINTS = "checkpoints"
_STATE = "state.json"
#: Train splits larger than this are rendered batch by batch instead of held in memory
#: (~28 KB an image at 96 px).
MATERIALISE_LIMIT = 20000
#: Config fields that may differ between a run and its resumption.
_RESUME_FREE = ("output_dir", "progress", "num_threads", "device")


class NonFiniteLossError(NonFiniteError):
    """The loss (or gradient norm) became NaN/inf; the last good checkpoint is kept."""


@dataclass
class PretrainConfig:
    """One pre-training run. Stage A trains the vision tower alone on image heads (cheap per
    image, so it does the reading); stage B trains tower and projector through the frozen
    language model's answer loss (a forward and backward through every LM layer per item).
    The defaults fit about half an hour on 2 CPU cores (wall times of the committed runs:
    results/vlm/README.md); ``num_threads=1`` because two threads beside another job were
    slower than one.

    ``checkpoint_every`` counts steps within each stage; ``eval_every`` counts stage-B steps
    (the last stage-B step is always evaluated); ``eval_n`` is the number of ``valid`` items
    (the first ones) used for the before/per-eval accuracy and for selecting the best state.
    ``init_from``: a ``vision.safetensors`` of an earlier run whose vision tower and projector
    start this run instead of the seeded random ones (its VisionConfig must equal ``vision``;
    its sha256 is recorded). Both stages then continue from it, with fresh optimizers and
    learning-rate schedules; "before" is that starting point's accuracy.
    ``char_head``: stage A also trains a per-token character head (:func:`patch_char_labels`):
    dense, per-patch supervision of where each letter or digit is, which word and digit heads
    on the mean-pooled features lack.
    ``device``: where to train (None or "auto": CUDA, then MPS, then CPU); it may change when
    resuming (checkpoints hold CPU tensors).
    ``num_threads``: torch threads during the run (restored afterwards); None leaves torch's
    setting. It and ``progress`` may change when resuming (other thread counts may round
    differently, so a bit-identical resume needs the same value).
    """

    output_dir: str | Path
    language_model: str | None = None
    vision: VisionConfig = field(default_factory=VisionConfig)
    data: TextImageConfig = field(default_factory=lambda: TextImageConfig(n_train=10000))
    seed: int = 0
    stage_a_steps: int = 1200
    stage_a_batch: int = 64
    stage_a_lr: float = 1e-3
    stage_b_steps: int = 200
    stage_b_batch: int = 8
    lr_projector: float = 1e-3
    lr_vision: float = 1e-4
    eval_every: int = 40
    eval_n: int = 64
    max_new_tokens: int = 8
    checkpoint_every: int = 50
    progress: bool = True
    num_threads: int | None = 1
    init_from: str | None = None
    char_head: bool = False
    device: str | None = None

    def validate(self) -> None:
        for name in ("stage_a_steps", "stage_b_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "stage_a_batch",
            "stage_b_batch",
            "eval_every",
            "eval_n",
            "max_new_tokens",
            "checkpoint_every",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("stage_a_lr", "lr_projector", "lr_vision"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.data.image_size != self.vision.image_size:
            raise ConfigError(
                f"data.image_size {self.data.image_size} != vision.image_size "
                f"{self.vision.image_size}: the images must have the vision tower's size"
            )
        if self.eval_n > self.data.n_valid:
            raise ConfigError(
                f"eval_n {self.eval_n} exceeds data.n_valid {self.data.n_valid}: lower eval_n "
                "or raise n_valid"
            )
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1 or None, got {self.num_threads}")
        if self.data.n_train < 1:
            raise ConfigError("data.n_train must be >= 1: there is nothing to train on")
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise ConfigError(
                f"init_from {self.init_from} not found: pass the vision.safetensors of a finished "
                "`t2bench vlm pretrain` run, or leave init_from unset to start from random weights"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_dir"] = str(self.output_dir)
        return d


# --------------------------------------------------------------------------- model parts


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
    grid = None if heads.chars is None else _char_grid(model)
    labels = stage_a_labels(items, grid)
    pixels = pixel_values(processor, items).to(next(heads.parameters()).device)
    logits = heads(vision_features(model, pixels))
    pred = {k: v.argmax(-1).cpu() for k, v in logits.items()}
    out: dict[str, Any] = {"n": len(items)}
    if "chars" in labels:  # accuracy on the patches that hold a character centre
        keep = labels["chars"] != 0
        out["chars"] = _mean((pred["chars"][keep] == labels["chars"][keep]).tolist())
    for name in ("word", "colour"):
        keep = labels[name] != IGNORE
        out[name] = _mean((pred[name][keep] == labels[name][keep]).tolist())
    keep = labels["units"] != IGNORE
    hits = torch.ones_like(keep)
    for name in DIGIT_HEADS:
        hits &= pred[name] == labels[name]
    out["number"] = _mean(hits[keep].tolist())
    return out


def _char_grid(model) -> tuple[int, int]:
    vc = model.config.vision_config
    return vc.image_size, vc.patch_size


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None


@contextmanager
def _padding_side(tokenizer, side: str):
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
    with _padding_side(tok, "right"):
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


def lr_factor(step: int, total: int) -> float:
    """Multiplier of the peak learning rate for (1-based) ``step`` of ``total``."""
    warmup = max(1, round(WARMUP_FRACTION * total))
    if step <= warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------- generation


def clean_answer(generation: str) -> str:
    """What lm-eval scores: the text up to the first newline, then the task's cleaning."""
    text = generation.split("\n", 1)[0]
    try:
        from t2bench.tasks.vqa_metric import clean_prediction
    except ImportError:
        return text.strip()
    return clean_prediction(text)


class _StopAtNewline:
    """Stopping criterion: a row is done once its generated text contains a newline."""

    def __init__(self, tokenizer, start: int):
        self.tokenizer, self.start = tokenizer, start

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        return torch.tensor(["\n" in t for t in texts], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_answers(
    model, processor, items: list[dict], max_new_tokens: int = 8, batch: int = 16
) -> list[str]:
    """Greedy answers to the task prompt, left-padded batches, stopped at a newline, cleaned."""
    from transformers import StoppingCriteriaList

    tok = processor.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    answers: list[str] = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        with _padding_side(tok, "left"):
            enc = processor(
                images=[it["image"] for it in chunk],
                text=[prompt_text(it) for it in chunk],
                return_tensors="pt",
                padding=True,
            )
        enc = enc.to(model.device)
        width = enc["input_ids"].shape[1]
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
            stopping_criteria=StoppingCriteriaList([_StopAtNewline(tok, width)]),
        )
        texts = tok.batch_decode(out[:, width:], skip_special_tokens=True)
        answers.extend(clean_answer(t) for t in texts)
    return answers


def evaluate(model, processor, items: list[dict], max_new_tokens: int = 8, batch: int = 16):
    """Exact-match accuracy (cleaned, lower-cased prediction == answer), overall and per qtype."""
    preds = generate_answers(model, processor, items, max_new_tokens=max_new_tokens, batch=batch)
    hits = [
        p.strip().lower() == str(it["answer"]).lower() for p, it in zip(preds, items, strict=True)
    ]
    per_qtype = {}
    for q in ti.QUESTIONS:
        sel = [h for h, it in zip(hits, items, strict=True) if it["qtype"] == q]
        per_qtype[q] = _mean(sel)
    return {
        "overall": _mean(hits),
        "per_qtype": per_qtype,
        "n": len(items),
        "examples": [
            {"id": it["id"], "answer": it["answer"], "prediction": p}
            for it, p in list(zip(items, preds, strict=True))[:6]
        ],
    }


# --------------------------------------------------------------------------- data order


@lru_cache(maxsize=8)
def _permutation(seed: int, stage: str, epoch: int, n: int) -> tuple[int, ...]:
    key = hashlib.sha256(f"t2bench-vlm-pretrain:{seed}:{stage}:{epoch}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & (2**63 - 1))
    return tuple(torch.randperm(n, generator=g).tolist())


def batch_indices(seed: int, stage: str, step: int, batch: int, n: int) -> list[int]:
    """Train indices of (1-based) ``step``: epoch-wise seeded permutations, a pure function."""
    return epoch_order(
        (step - 1) * batch, batch, n, lambda epoch: _permutation(seed, stage, epoch, n)
    )


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_name(stage: str, step: int) -> str:
    return f"{stage}-{step:07d}"


def _complete_checkpoints(out: Path) -> list[Path]:
    return complete_checkpoints(
        out / CHECKPOINTS,
        _STATE,
        name_ok=lambda name: name[:2] in ("a-", "b-"),
        order=lambda p: p.name,
    )


def _save_checkpoint(out: Path, state: dict, model, heads, optimizer, best) -> Path:
    from safetensors.torch import save_file

    final = out / CHECKPOINTS / _checkpoint_name(state["stage"], state["step"])
    # the same step redone after a crash writes the same content and replaces it
    with replacing(final, folder=True) as tmp:
        save_file(vision_state(model), str(tmp / "vision.safetensors"))
        if heads is not None:
            heads_sd = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
            save_file(heads_sd, str(tmp / "heads.safetensors"))
        if optimizer is not None:
            tensors, meta = optimizer_tensors(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            (tmp / "optimizer.json").write_text(json.dumps(meta))
        if best is not None:
            save_file(best, str(tmp / "best.safetensors"))
        (tmp / _STATE).write_text(json.dumps(state, indent=1))
    prune_checkpoints(_complete_checkpoints(out), keep=1)
    return final


def _load_checkpoint(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        state = json.loads((path / _STATE).read_text())
        ckpt = {"path": path, "state": state}
        for name in ("vision", "heads", "optimizer", "best"):
            f = path / f"{name}.safetensors"
            ckpt[name] = load_file(str(f)) if f.is_file() else None
        if ckpt["optimizer"] is not None:
            meta = json.loads((path / "optimizer.json").read_text())
            ckpt["optimizer"] = optimizer_state_dict(ckpt["optimizer"], meta)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"checkpoint {path} is damaged ({exc}); delete that folder to start the run over"
        ) from None
    return ckpt


# --------------------------------------------------------------------------- the run


def _check_finite(value: torch.Tensor, what: str, stage: str, step: int, out: Path) -> None:
    finite_or_raise(
        value,
        what,
        where=f"stage {stage.upper()} step {step}",
        checkpoints=_complete_checkpoints(out),
        fix="Nothing of this step was saved. Lower the learning rate (stage_a_lr / lr_projector / "
        "lr_vision) and start again in a new output_dir; rerunning unchanged resumes from the "
        "checkpoint and will likely hit it again.",
        error=NonFiniteLossError,
    )


def _progress(cfg: PretrainConfig, total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="step", disable=not cfg.progress, leave=True
    )


def _fresh_state(cfg: PretrainConfig) -> dict[str, Any]:
    return {
        "stage": "a",
        "step": 0,
        "config": cfg.to_dict(),
        "loss_a": [],
        "loss_b": [],
        "before": None,
        "stage_a_valid": None,
        "evals": [],
        "best": None,
        "wall": {"setup": 0.0, "eval": 0.0, "stage_a": 0.0, "stage_b": 0.0},
        "sessions": 0,
    }


def _load_init(model, cfg: PretrainConfig) -> dict[str, Any]:
    """Load ``cfg.init_from`` into the vision side; its path, sha256 and own provenance."""
    path = Path(cfg.init_from)
    vision, info, tensors = read_vision_weights(path)
    if vision != cfg.vision:
        raise ConfigError(
            f"init_from {path} holds a vision side built with {vision}, but this run builds "
            f"{cfg.vision}: pass the same VisionConfig or another init_from"
        )
    load_vision_weights(model, tensors)
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "commit": info.get("commit"),
        "created_utc": info.get("created_utc"),
        "stage_a_valid_heads": info.get("stage_a_valid_heads"),
        "valid_accuracy_best": info.get("valid_accuracy_best"),
    }


def _refuse_finished(out: Path) -> None:
    if (out / SUMMARY).exists():
        raise ConfigError(
            f"{out} holds a finished pre-training run ({out / SUMMARY} exists); results are "
            "never overwritten: pass a new output_dir, or delete that folder to redo the run"
        )


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Run (or resume) stages A and B; write ``vision.safetensors`` + ``summary.json``.

    Returns the summary (also written to ``output_dir/summary.json``).
    """
    cfg.validate()
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _pretrain(cfg)
    finally:
        torch.set_num_threads(threads)


def _pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    t_start = time.perf_counter()
    out = Path(cfg.output_dir)
    _refuse_finished(out)
    done = _complete_checkpoints(out)
    ckpt = _load_checkpoint(done[-1]) if done else None
    if ckpt is not None:
        diffs = config_differences(cfg.to_dict(), ckpt["state"]["config"], free=_RESUME_FREE)
        if diffs:
            raise ConfigError(
                f"{out} holds checkpoints of a different run ({'; '.join(diffs)}). Resume with "
                "the same settings, or pass a new output_dir to start a new run."
            )
        state = ckpt["state"]
    else:
        state = _fresh_state(cfg)
    state["sessions"] += 1
    state["config"] = cfg.to_dict()

    model, processor, lm_id = build_vlm(cfg.language_model, cfg.vision)
    model.eval()  # no dropout anywhere; gradients flow all the same
    device = resolve_device(cfg.device)
    model.to(device)
    freeze_language_model(model)
    lm_before = lm_digest(model)
    if cfg.init_from is not None:
        state["init_from"] = _load_init(model, cfg)
    if ckpt is not None:
        load_vision_weights(model, ckpt["vision"])

    if cfg.data.n_train > MATERIALISE_LIMIT:  # rendered per batch: fresh images every step
        train = ti.RenderedSplit(cfg.data, "train")
    else:  # rendered once, revisited every epoch
        train = ti.make_split(cfg.data, "train")
    valid = ti.make_split(cfg.data, "valid", cfg.eval_n)
    state["wall"]["setup"] += time.perf_counter() - t_start

    def timed_eval() -> dict[str, Any]:
        t = time.perf_counter()
        result = evaluate(model, processor, valid, max_new_tokens=cfg.max_new_tokens)
        state["wall"]["eval"] += time.perf_counter() - t
        return result

    if state["before"] is None:
        state["before"] = timed_eval()

    # ------------------------------------------------------------------ stage A
    a_start = state["step"] if state["stage"] == "a" else cfg.stage_a_steps
    if a_start < cfg.stage_a_steps:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            heads = AuxHeads(cfg.vision.hidden_size, chars=cfg.char_head).to(device)
        params = [p for n, p in model.named_parameters() if n.startswith("model.vision_tower.")]
        opt = torch.optim.AdamW(
            [{"params": params + list(heads.parameters()), "lr": cfg.stage_a_lr}],
            weight_decay=WEIGHT_DECAY,
        )
        for group in opt.param_groups:
            group["base_lr"] = cfg.stage_a_lr
        if ckpt is not None and ckpt["state"]["stage"] == "a" and a_start > 0:
            heads.load_state_dict(ckpt["heads"])
            opt.load_state_dict(ckpt["optimizer"])
        bar = _progress(cfg, cfg.stage_a_steps, a_start, "stage A: vision tower + aux heads")
        clip = params + list(heads.parameters())
        grid = _char_grid(model) if cfg.char_head else None
        for step in range(a_start + 1, cfg.stage_a_steps + 1):
            t = time.perf_counter()
            idx = batch_indices(cfg.seed, "a", step, cfg.stage_a_batch, len(train))
            batch_items = [train[i] for i in idx]
            pixels = pixel_values(processor, batch_items).to(device)
            labels = {k: v.to(device) for k, v in stage_a_labels(batch_items, grid).items()}
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(step, cfg.stage_a_steps)
            opt.zero_grad(set_to_none=True)
            loss, parts = stage_a_loss(model, heads, pixels, labels)
            _check_finite(loss.detach(), "loss", "a", step, out)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(clip, GRAD_CLIP)
            _check_finite(norm, "gradient norm", "a", step, out)
            opt.step()
            state["loss_a"].append(float(loss.detach()))
            state["stage"], state["step"] = "a", step
            state["wall"]["stage_a"] += time.perf_counter() - t
            bar.update(1)
            bar.set_postfix(
                loss=f"{state['loss_a'][-1]:.3f}", **{k: f"{v:.2f}" for k, v in parts.items()}
            )
            if step == cfg.stage_a_steps:
                with torch.no_grad():
                    state["stage_a_valid"] = stage_a_accuracy(model, heads, processor, valid)
            if step % cfg.checkpoint_every == 0 or step == cfg.stage_a_steps:
                _save_checkpoint(out, state, model, heads, opt, None)
        bar.close()
        del heads, opt

    # ------------------------------------------------------------------ stage B
    best = None
    b_start = 0
    if state["stage"] == "b":
        b_start = state["step"]
        best = ckpt["best"] if ckpt is not None else None
    if b_start < cfg.stage_b_steps:
        opt = stage_b_optimizer(model, cfg.lr_projector, cfg.lr_vision)
        if ckpt is not None and ckpt["state"]["stage"] == "b" and b_start > 0:
            opt.load_state_dict(ckpt["optimizer"])
        clip = [p for p in model.parameters() if p.requires_grad]
        bar = _progress(cfg, cfg.stage_b_steps, b_start, "stage B: projector + tower, LM frozen")
        for step in range(b_start + 1, cfg.stage_b_steps + 1):
            t = time.perf_counter()
            idx = batch_indices(cfg.seed, "b", step, cfg.stage_b_batch, len(train))
            batch = make_lm_batch(processor, [train[i] for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(step, cfg.stage_b_steps)
            opt.zero_grad(set_to_none=True)
            loss = stage_b_loss(model, batch)
            _check_finite(loss.detach(), "loss", "b", step, out)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(clip, GRAD_CLIP)
            _check_finite(norm, "gradient norm", "b", step, out)
            opt.step()
            state["loss_b"].append(float(loss.detach()))
            state["stage"], state["step"] = "b", step
            state["wall"]["stage_b"] += time.perf_counter() - t
            bar.update(1)
            bar.set_postfix(loss=f"{state['loss_b'][-1]:.3f}")
            if step % cfg.eval_every == 0 or step == cfg.stage_b_steps:
                result = {"step": step, **timed_eval()}
                state["evals"].append(result)
                bar.write(
                    f"stage B step {step}: valid exact match {result['overall']:.3f} "
                    f"(per qtype {result['per_qtype']})"
                )
                if state["best"] is None or result["overall"] >= state["best"]["overall"]:
                    state["best"] = {"step": step, "overall": result["overall"]}
                    best = {k: v.clone() for k, v in vision_state(model).items()}  # no views
            if step % cfg.checkpoint_every == 0 or step == cfg.stage_b_steps:
                _save_checkpoint(out, state, model, None, opt, best)
        bar.close()
        del opt

    # ------------------------------------------------------------------ outputs
    if best is not None:
        load_vision_weights(model, best)
    if lm_digest(model) != lm_before:
        raise T2BenchError("the language model's weights changed during pre-training (a bug)")
    summary = _summary(cfg, state, lm_id, lm_before, time.perf_counter() - t_start)
    vision_path = out / VISION_FILE
    if vision_path.exists():  # written by an earlier session killed before summary.json
        vision_path.unlink()
    save_vision_weights(model, cfg.vision, vision_path, _header_info(summary))
    write_json_atomic(out / SUMMARY, summary)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return summary


def _summary(cfg, state, lm_id: str, lm_sha: str, session_s: float) -> dict[str, Any]:
    from t2bench.core.provenance import provenance

    wall = dict(state["wall"])
    wall["total"] = sum(wall.values())
    sec_per_step = {
        "stage_a": wall["stage_a"] / cfg.stage_a_steps if cfg.stage_a_steps else None,
        "stage_b": wall["stage_b"] / cfg.stage_b_steps if cfg.stage_b_steps else None,
    }
    best = state["best"]
    best_eval = next((e for e in state["evals"] if best and e["step"] == best["step"]), None)
    data = ti.dataset_metadata(cfg.data)
    return {
        "finished": True,
        "config": cfg.to_dict(),
        "language_model": lm_id,
        "language_model_sha256": lm_sha,
        "language_model_unchanged": True,
        "image_tokens": cfg.vision.image_tokens,
        "init_from": state.get("init_from"),
        "data": {**data, "splits_used": {"train": cfg.data.n_train, "valid": cfg.eval_n}},
        "schedule": {
            "warmup_fraction": WARMUP_FRACTION,
            "min_lr_fraction": MIN_LR_FRACTION,
            "weight_decay": WEIGHT_DECAY,
            "grad_clip": GRAD_CLIP,
            "optimizer": "AdamW",
        },
        "wall_s": wall,
        "sec_per_step": sec_per_step,
        "torch_threads": torch.get_num_threads(),
        "sessions": state["sessions"],
        "loss": {"stage_a": state["loss_a"], "stage_b": state["loss_b"]},
        "stage_a_valid_heads": state["stage_a_valid"],
        "valid_accuracy": {
            "metric": "exact match of the cleaned greedy answer, first eval_n valid items",
            "before": state["before"],
            "best": best_eval,
            "evals": state["evals"],
        },
        "selected_step": best["step"] if best else None,
        "provenance": provenance(
            language_model=lm_id,
            seed=cfg.seed,
            data_fingerprint=data["fingerprint"],
            wall_s=wall["total"],
            last_session_s=session_s,
        ),
    }


def _accuracy_only(result: dict | None) -> dict | None:
    if result is None:
        return None
    return {k: result[k] for k in ("overall", "per_qtype", "n") if k in result} | (
        {"step": result["step"]} if "step" in result else {}
    )


def _header_info(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without loss curves, per-eval details and examples (safetensors header)."""
    acc = summary["valid_accuracy"]
    return {
        "config": summary["config"],
        "language_model": summary["language_model"],
        "language_model_sha256": summary["language_model_sha256"],
        "data_fingerprint": summary["data"]["fingerprint"],
        "selected_step": summary["selected_step"],
        "valid_accuracy_before": _accuracy_only(acc["before"]),
        "valid_accuracy_best": _accuracy_only(acc["best"]),
        "stage_a_valid_heads": summary["stage_a_valid_heads"],
        "init_from": summary["init_from"],
        "wall_s": summary["wall_s"],
        "final_loss": {k: (v[-1] if v else None) for k, v in summary["loss"].items()},
        "commit": summary["provenance"]["commit"],
        "created_utc": summary["provenance"]["created_utc"],
    }
