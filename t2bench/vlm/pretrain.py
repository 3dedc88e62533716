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

import json
import time
from pathlib import Path
from typing import Any

import torch

from t2bench.core.io import check_writable, file_sha256, load_tensors, save_tensors
from t2bench.core.run import DamagedCheckpointError, NonFiniteError, RunFolder
from t2bench.errors import ConfigError, T2BenchError
from t2bench.models import resolve_device
from t2bench.tasks import textimages as ti
from t2bench.train.checkpoint import optimizer_state_dict, optimizer_tensors
from t2bench.vlm.answers import clean_answer, generate_answers, valid_exact_match
from t2bench.vlm.assemble import (
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
from t2bench.vlm.pretrain_config import PretrainConfig
from t2bench.vlm.pretrain_schedule import (
    MIN_LR_FRACTION,
    WARMUP_FRACTION,
    batch_indices,
    lr_factor,
)

__all__ = [
    "CHARSET",
    "PROMPT",
    "AuxHeads",
    "NonFiniteLossError",
    "PretrainConfig",
    "clean_answer",
    "valid_exact_match",
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


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_name(stage: str, step: int) -> str:
    return f"{stage}-{step:07d}"


def _run_folder(out: Path) -> RunFolder:
    """The pre-training run in ``out``: checkpoints ``a-0000040``, ``b-0000120`` in that order."""
    return RunFolder(out, "pre-training run", checkpoint_ok=lambda name: name[:2] in ("a-", "b-"))


def _save_checkpoint(out: Path, state: dict, model, heads, optimizer, best) -> Path:
    # save_tensors, not safetensors' save_file: a full disk is an error naming the cause
    def write(folder: Path) -> None:
        save_tensors(folder / "vision.safetensors", vision_state(model))
        if heads is not None:
            heads_sd = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
            save_tensors(folder / "heads.safetensors", heads_sd)
        if optimizer is not None:
            tensors, meta = optimizer_tensors(optimizer)
            save_tensors(folder / "optimizer.safetensors", tensors)
            (folder / "optimizer.json").write_text(json.dumps(meta))
        if best is not None:
            save_tensors(folder / "best.safetensors", best)

    name = _checkpoint_name(state["stage"], state["step"])
    return _run_folder(out).save_checkpoint(name, state, write, keep=1)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = RunFolder.read_state(path)
        ckpt = {"path": path, "state": state}
        for name in ("vision", "heads", "optimizer", "best"):
            f = path / f"{name}.safetensors"
            ckpt[name] = load_tensors(f) if f.is_file() else None
        if ckpt["optimizer"] is not None:
            meta = json.loads((path / "optimizer.json").read_text())
            ckpt["optimizer"] = optimizer_state_dict(ckpt["optimizer"], meta)
    except (OSError, ValueError, KeyError) as exc:
        raise DamagedCheckpointError(path, exc) from None
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


class _Session:
    """One session of a pre-training run: set up (or resumed) by the constructor, then stage A,
    stage B and the outputs, each a method; ``state`` is what every checkpoint saves."""

    def __init__(self, cfg: PretrainConfig):
        self.t_start = time.perf_counter()
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.folder = _run_folder(self.out)
        self.folder.refuse_finished()
        # a read-only or full output folder fails here, before any model is loaded
        check_writable(self.out, "pre-training output folder")
        self.ckpt = self.folder.latest_checkpoint(_load_checkpoint)
        if self.ckpt is not None:
            self.folder.check_settings(
                cfg.to_dict(), self.ckpt["state"]["config"], free=_RESUME_FREE
            )
            self.state = self.ckpt["state"]
        else:
            self.state = _fresh_state(cfg)
        self.state["sessions"] += 1
        self.state["config"] = cfg.to_dict()

        model, self.processor, self.lm_id = build_vlm(cfg.language_model, cfg.vision)
        model.eval()  # no dropout anywhere; gradients flow all the same
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        freeze_language_model(self.model)
        self.lm_before = lm_digest(self.model)
        if cfg.init_from is not None:
            self.state["init_from"] = _load_init(self.model, cfg)
        if self.ckpt is not None:
            load_vision_weights(self.model, self.ckpt["vision"])

        if cfg.data.n_train > MATERIALISE_LIMIT:  # rendered per batch: fresh images every step
            self.train = ti.RenderedSplit(cfg.data, "train")
        else:  # rendered once, revisited every epoch
            self.train = ti.make_split(cfg.data, "train")
        self.valid = ti.make_split(cfg.data, "valid", cfg.eval_n)
        self.state["wall"]["setup"] += time.perf_counter() - self.t_start

    def timed_eval(self) -> dict[str, Any]:
        t = time.perf_counter()
        result = valid_exact_match(
            self.model, self.processor, self.valid, max_new_tokens=self.cfg.max_new_tokens
        )
        self.state["wall"]["eval"] += time.perf_counter() - t
        return result

    def _resumes(self, stage: str, start: int) -> bool:
        """Whether the loaded checkpoint holds this stage's optimizer (and heads) to go on with."""
        return self.ckpt is not None and self.ckpt["state"]["stage"] == stage and start > 0

    def _step_done(self, stage: str, step: int, loss: torch.Tensor, clip: list, opt) -> None:
        """Check the loss, back-propagate, clip, check the norm and step the optimizer."""
        _check_finite(loss.detach(), "loss", stage, step, self.out)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(clip, GRAD_CLIP)
        _check_finite(norm, "gradient norm", stage, step, self.out)
        opt.step()

    def stage_a(self) -> None:
        """The vision tower with auxiliary heads (layout, characters), the LM untouched."""
        cfg, state, model = self.cfg, self.state, self.model
        a_start = state["step"] if state["stage"] == "a" else cfg.stage_a_steps
        if a_start >= cfg.stage_a_steps:
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            heads = AuxHeads(cfg.vision.hidden_size, chars=cfg.char_head).to(self.device)
        params = [p for n, p in model.named_parameters() if n.startswith("model.vision_tower.")]
        opt = torch.optim.AdamW(
            [{"params": params + list(heads.parameters()), "lr": cfg.stage_a_lr}],
            weight_decay=WEIGHT_DECAY,
        )
        for group in opt.param_groups:
            group["base_lr"] = cfg.stage_a_lr
        if self._resumes("a", a_start):
            heads.load_state_dict(self.ckpt["heads"])
            opt.load_state_dict(self.ckpt["optimizer"])
        bar = _progress(cfg, cfg.stage_a_steps, a_start, "stage A: vision tower + aux heads")
        clip = params + list(heads.parameters())
        grid = char_grid(model) if cfg.char_head else None
        for step in range(a_start + 1, cfg.stage_a_steps + 1):
            t = time.perf_counter()
            idx = batch_indices(cfg.seed, "a", step, cfg.stage_a_batch, len(self.train))
            batch_items = [self.train[i] for i in idx]
            pixels = pixel_values(self.processor, batch_items).to(self.device)
            labels = {k: v.to(self.device) for k, v in stage_a_labels(batch_items, grid).items()}
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(step, cfg.stage_a_steps)
            opt.zero_grad(set_to_none=True)
            loss, parts = stage_a_loss(model, heads, pixels, labels)
            self._step_done("a", step, loss, clip, opt)
            state["loss_a"].append(float(loss.detach()))
            state["stage"], state["step"] = "a", step
            state["wall"]["stage_a"] += time.perf_counter() - t
            bar.update(1)
            bar.set_postfix(
                loss=f"{state['loss_a'][-1]:.3f}", **{k: f"{v:.2f}" for k, v in parts.items()}
            )
            if step == cfg.stage_a_steps:
                with torch.no_grad():
                    state["stage_a_valid"] = stage_a_accuracy(
                        model, heads, self.processor, self.valid
                    )
            if step % cfg.checkpoint_every == 0 or step == cfg.stage_a_steps:
                _save_checkpoint(self.out, state, model, heads, opt, None)
        bar.close()

    def stage_b(self) -> dict | None:
        """Projector and tower on captioned answers, the LM frozen; returns the vision weights
        best on validation (None when no evaluation ran)."""
        cfg, state, model = self.cfg, self.state, self.model
        best = None
        b_start = 0
        if state["stage"] == "b":
            b_start = state["step"]
            best = self.ckpt["best"] if self.ckpt is not None else None
        if b_start >= cfg.stage_b_steps:
            return best
        opt = stage_b_optimizer(model, cfg.lr_projector, cfg.lr_vision)
        if self._resumes("b", b_start):
            opt.load_state_dict(self.ckpt["optimizer"])
        clip = [p for p in model.parameters() if p.requires_grad]
        bar = _progress(cfg, cfg.stage_b_steps, b_start, "stage B: projector + tower, LM frozen")
        for step in range(b_start + 1, cfg.stage_b_steps + 1):
            t = time.perf_counter()
            idx = batch_indices(cfg.seed, "b", step, cfg.stage_b_batch, len(self.train))
            batch = make_lm_batch(self.processor, [self.train[i] for i in idx])
            batch = {k: v.to(self.device) for k, v in batch.items()}
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(step, cfg.stage_b_steps)
            opt.zero_grad(set_to_none=True)
            loss = stage_b_loss(model, batch)
            self._step_done("b", step, loss, clip, opt)
            state["loss_b"].append(float(loss.detach()))
            state["stage"], state["step"] = "b", step
            state["wall"]["stage_b"] += time.perf_counter() - t
            bar.update(1)
            bar.set_postfix(loss=f"{state['loss_b'][-1]:.3f}")
            if step % cfg.eval_every == 0 or step == cfg.stage_b_steps:
                result = {"step": step, **self.timed_eval()}
                state["evals"].append(result)
                bar.write(
                    f"stage B step {step}: valid exact match {result['overall']:.3f} "
                    f"(per qtype {result['per_qtype']})"
                )
                if state["best"] is None or result["overall"] >= state["best"]["overall"]:
                    state["best"] = {"step": step, "overall": result["overall"]}
                    best = {k: v.clone() for k, v in vision_state(model).items()}  # no views
            if step % cfg.checkpoint_every == 0 or step == cfg.stage_b_steps:
                _save_checkpoint(self.out, state, model, None, opt, best)
        bar.close()
        return best

    def finish(self, best: dict | None) -> dict[str, Any]:
        """Write the selected vision weights and the summary; drop the checkpoints."""
        if best is not None:
            load_vision_weights(self.model, best)
        if lm_digest(self.model) != self.lm_before:
            raise T2BenchError("the language model's weights changed during pre-training (a bug)")
        summary = _summary(
            self.cfg, self.state, self.lm_id, self.lm_before, time.perf_counter() - self.t_start
        )
        vision_path = self.out / VISION_FILE
        if vision_path.exists():  # written by an earlier session killed before summary.json
            vision_path.unlink()
        save_vision_weights(self.model, self.cfg.vision, vision_path, _header_info(summary))
        self.folder.write_summary(summary)
        self.folder.remove_checkpoints()
        return summary


def _pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    session = _Session(cfg)
    if session.state["before"] is None:
        session.state["before"] = session.timed_eval()
    session.stage_a()
    best = session.stage_b()
    return session.finish(best)


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
