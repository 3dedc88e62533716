"""The settings of a vision pre-training run (:class:`PretrainConfig`), checked before anything
is built."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from t2bench.errors import ConfigError
from t2bench.tasks.textimages import TextImageConfig
from t2bench.vlm.assemble import (
    VisionConfig,
)


@dataclass
class PretrainConfig:
    """One pre-training run. Stage A trains the vision tower alone on image heads (cheap per
    image, so it does the reading); stage B trains tower and projector through the frozen
    language model's answer loss (a forward and backward through every LM layer per item).
    The committed runs' wall times are in their summaries (results/vlm/README.md).

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
