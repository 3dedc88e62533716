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
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from t2bench.core.io import file_sha256
from t2bench.core.run import NonFiniteError, RunFolder, epoch_order
from t2bench.errors import ConfigError, T2BenchError
from t2bench.models import resolve_device
from t2bench.tasks import textimages as ti
from t2bench.tasks.textimages import TextImageConfig
from t2bench.train.checkpoint import optimizer_state_dict, optimizer_tensors
from t2bench.vlm.answers import clean_answer, evaluate, generate_answers
from t2bench.vlm.assemble import (
    VisionConfig,
    build_vlm,
    load_vision_weights,
    read_vision_weights,
    save_vision_weights,
    vision_state,
)
from t2bench.vlm.objectives import (
    CHARSET,
    PROMPT,
    WEIGHT_DECAY,
    AuxHeads,
    char_grid,
    freeze_language_model,
    lm_digest,
    make_lm_batch,
    patch_char_labels,
    pixel_values,
    stage_a_accuracy,
    stage_a_labels,
    stage_a_loss,
    stage_b_loss,
    stage_b_optimizer,
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

#: Learning-rate schedule (both stages): linear warm-up over this fraction of the steps, then
#: cosine decay to ``MIN_LR_FRACTION`` of the peak. A pure function of the step number.
WARMUP_FRACTION = 0.05
MIN_LR_FRACTION = 0.1
GRAD_CLIP = 1.0
SUMMARY = RunFolder.SUMMARY
VISION_FILE = "vision.safetensors"
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


def lr_factor(step: int, total: int) -> float:
    """Multiplier of the peak learning rate for (1-based) ``step`` of ``total``."""
    warmup = max(1, round(WARMUP_FRACTION * total))
    if step <= warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


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


def _run_folder(out: Path) -> RunFolder:
    """The pre-training run in ``out``: checkpoints ``a-0000040``, ``b-0000120`` in that order."""
    return RunFolder(out, "pre-training run", checkpoint_ok=lambda name: name[:2] in ("a-", "b-"))


def _save_checkpoint(out: Path, state: dict, model, heads, optimizer, best) -> Path:
    from safetensors.torch import save_file

    def write(folder: Path) -> None:
        save_file(vision_state(model), str(folder / "vision.safetensors"))
        if heads is not None:
            heads_sd = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
            save_file(heads_sd, str(folder / "heads.safetensors"))
        if optimizer is not None:
            tensors, meta = optimizer_tensors(optimizer)
            save_file(tensors, str(folder / "optimizer.safetensors"))
            (folder / "optimizer.json").write_text(json.dumps(meta))
        if best is not None:
            save_file(best, str(folder / "best.safetensors"))

    name = _checkpoint_name(state["stage"], state["step"])
    return _run_folder(out).save_checkpoint(name, state, write, keep=1)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        state = json.loads((path / RunFolder.STATE).read_text())
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
    _run_folder(out).check_finite(
        value,
        what,
        where=f"stage {stage.upper()} step {step}",
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
        "sha256": file_sha256(path),
        "commit": info.get("commit"),
        "created_utc": info.get("created_utc"),
        "stage_a_valid_heads": info.get("stage_a_valid_heads"),
        "valid_accuracy_best": info.get("valid_accuracy_best"),
    }


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
    folder = _run_folder(out)
    folder.refuse_finished()
    done = folder.checkpoints()
    ckpt = _load_checkpoint(done[-1]) if done else None
    if ckpt is not None:
        folder.check_settings(cfg.to_dict(), ckpt["state"]["config"], free=_RESUME_FREE)
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
        grid = char_grid(model) if cfg.char_head else None
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
    folder.write_summary(summary)
    folder.remove_checkpoints()
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
