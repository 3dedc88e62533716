"""Training configuration: one dataclass, validated once, saved with every checkpoint.

Defaults follow the Transformer² paper where it states them (AdamW, lr 2e-3, cosine decay,
grad-norm clip 1e-3, reward +1/-1, λ·KL to the base model, best-on-validation checkpoint);
choices where the paper and its public code differ are options (KL direction, greedy vs
sampled rollouts, reward normalisation, parameterisation).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from t2bench.data.splits import check_difficulty
from t2bench.errors import ConfigError
from t2bench.svf.expert import PARAMETERISATIONS

METHODS = ("svf", "lora", "ia3", "tinylora")
OBJECTIVES = ("pg", "ntp")
KL_DIRECTIONS = ("policy_ref", "ref_policy")
#: raw rewards (the paper's REINFORCE) | minus the global batch mean | z-scored over the batch |
#: minus the mean of the sample's own prompt group | z-scored within that group (GRPO)
ADVANTAGES = ("raw", "center", "whiten", "group", "group_whiten")
GROUP_ADVANTAGES = ("group", "group_whiten")
REDUCTIONS = ("mean", "sum")
LOGGERS = ("none", "tensorboard", "wandb")
#: auto: bfloat16 where it is faster (a bf16 GPU, a CPU with AVX-512 BF16 or AMX), else float32
COMPUTE_DTYPES = ("float32", "bfloat16", "auto")
#: SVF under a lower compute dtype: the change U diag(σ⊙(z−1)) Vᵀ formed in fp32, or in the
#: compute dtype (bf16 copies of U and Vᵀ; still added to the fp32 W before W''s one cast)
SVF_DELTA_DTYPES = ("float32", "compute")

#: Fields that may change between a run and its resumption without changing its result.
RESUMABLE_FIELDS = ("output_dir", "log_with", "progress", "eval_at_start")
#: Fields added after runs were recorded: :meth:`TrainConfig.fingerprint` leaves them out while
#: they hold their default, so a config that does not set them keeps the fingerprint it had
#: before they existed (committed runs, resumable checkpoints).
FINGERPRINT_OPTIONAL = (
    "group_size",
    "difficulty",
    "compute_dtype",
    "stop_without_signal",
    "tinylora_r",
    "tinylora_u",
    "tinylora_tying",
    "tinylora_targets",
    "svf_delta_dtype",
)


@dataclass
class TrainConfig:
    """Everything a training run depends on. ``output_dir`` holds checkpoints and the result."""

    task: str = "math"
    output_dir: str = "runs/expert"
    model: str | None = None  # packaged name, local folder or hub id; None = SmolLM2-135M
    method: str = "svf"  # svf | lora | ia3 | tinylora
    objective: str = "pg"  # pg (REINFORCE) | ntp (next-token prediction on references)
    data: str | None = None  # JSONL file replacing the packaged training split
    valid_data: str | None = None  # JSONL file replacing the packaged validation split
    difficulty: str = "default"  # math only: "mix" adds easy one/two-step items (data.MATH_MIX)
    # SVF
    modules: str = "mlp"
    layers: str = "all"
    tower: str = "language"  # image-text models: language | vision | both
    parameterisation: str = "z"
    init_noise: float = 0.0
    # peft baselines (paper: r16, alpha 32, dropout 0.05 on q_proj+v_proj)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = "q_proj,v_proj"
    ia3_targets: str = "k_proj,v_proj,down_proj"
    # TinyLoRA (peft): W + U_r Σ_r (Σ_i v_i P_i) V_rᵀ with the frozen rank-r SVD of W, fixed
    # random r×r projections P_i and one trainable u-vector v per group of target matrices;
    # tying 0 = a vector per matrix, 1 = one vector shared by all (u parameters in total).
    # The default targets are SVF's default matrices (the MLP), so the two adapt the same weights
    tinylora_r: int = 2
    tinylora_u: int = 64
    tinylora_tying: float = 0.0
    tinylora_targets: str = "gate_proj,up_proj,down_proj"
    # optimisation
    steps: int = 20
    global_batch: int = 16
    micro_batch: int = 4
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1e-3  # 0 disables
    # policy gradient
    reward_correct: float = 1.0
    reward_wrong: float = -1.0
    kl_coef: float = 0.0
    kl_direction: str = "policy_ref"
    temperature: float = 1.0
    greedy: bool = False
    max_new_tokens: int | None = None  # None: the task's default (see rollout.DEFAULT_NEW_TOKENS)
    advantage: str = "raw"  # raw | center | whiten (over the batch) | group | group_whiten
    group_size: int = 1  # completions sampled per prompt (K); group advantages need K >= 2
    logprob_reduction: str = "mean"  # per-sequence mean or sum of token log-probs
    # validation, checkpoints, logging
    eval_every: int = 5
    eval_size: int = 64
    eval_batch: int = 16
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    # policy gradient: stop after this many consecutive steps without learning signal (every
    # group's samples got the same reward: the policy has collapsed to one answer per prompt
    # and, without KL, can no longer move); 0 = never
    stop_without_signal: int = 0
    # also score the base model on the validation items before step 1 (logged as step 0, the
    # start of the learning curve; never selected); changes nothing the run learns
    eval_at_start: bool = False
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    seed: int = 0
    dtype: str = "float32"
    # float32 | bfloat16 | auto: the frozen model computes in bf16 (forward, backward,
    # generation, validation), adapters, optimizer state and SVF composition stay fp32 (see
    # policy.py); auto picks bf16 only where the device computes it faster (policy.bf16_pays)
    compute_dtype: str = "float32"
    svf_delta_dtype: str = "float32"  # SVF_DELTA_DTYPES; only matters when compute_dtype is lower
    device: str = "auto"  # auto: cuda if present, else cpu (multi-process CPU uses gloo)
    mixed_precision: str = "no"
    log_with: str = "none"
    progress: bool = True
    name: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("objective", self.objective, OBJECTIVES)
        _choice("kl_direction", self.kl_direction, KL_DIRECTIONS)
        _choice("advantage", self.advantage, ADVANTAGES)
        _choice("logprob_reduction", self.logprob_reduction, REDUCTIONS)
        _choice("log_with", self.log_with, LOGGERS)
        names = ("steps", "global_batch", "micro_batch", "eval_batch", "checkpoint_every")
        for name in (*names, "group_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.stop_without_signal < 0:
            raise ConfigError(f"stop_without_signal must be >= 0, got {self.stop_without_signal}")
        self._validate_groups()
        if self.global_batch % self.micro_batch:
            raise ConfigError(
                f"global_batch {self.global_batch} is not a multiple of micro_batch "
                f"{self.micro_batch}: pick sizes where micro_batch divides global_batch"
            )
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.lr <= 0 or self.temperature <= 0:
            raise ConfigError("lr and temperature must be positive")
        if self.kl_coef < 0 or self.grad_clip < 0:
            raise ConfigError("kl_coef and grad_clip must be >= 0")
        _choice("parameterisation", self.parameterisation, PARAMETERISATIONS)
        if min(self.tinylora_r, self.tinylora_u) < 1 or not 0.0 <= self.tinylora_tying <= 1.0:
            raise ConfigError(
                f"tinylora_r and tinylora_u must be >= 1 and tinylora_tying in [0, 1], got "
                f"r={self.tinylora_r}, u={self.tinylora_u}, tying={self.tinylora_tying}"
            )
        _choice("tower", self.tower, ("language", "vision", "both"))
        _choice("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
        _choice("svf_delta_dtype", self.svf_delta_dtype, SVF_DELTA_DTYPES)
        if self.compute_dtype != "float32" and self.dtype not in ("float32", "fp32"):
            raise ConfigError(
                f"compute_dtype={self.compute_dtype!r} casts an fp32-loaded model after its SVD "
                f"and keeps fp32 copies to compose from; dtype={self.dtype!r} would lose them. "
                "Leave dtype at float32"
            )
        if self.tower != "language" and self.task != "vqa":
            raise ConfigError(f"tower={self.tower!r} needs an image-text task (task=vqa)")

        check_difficulty(self.task, self.difficulty)
        if self.difficulty != "default" and self.data and self.valid_data:
            raise ConfigError(
                f"difficulty={self.difficulty!r} picks the packaged split, but data and "
                "valid_data replace it; drop one of them or leave difficulty at 'default'"
            )

    def _validate_groups(self) -> None:
        """K samples per prompt: the global batch holds global_batch / K prompts, K times each."""
        k = self.group_size
        if self.advantage in GROUP_ADVANTAGES and k < 2:
            raise ConfigError(
                f"advantage={self.advantage!r} compares the samples of one prompt and needs "
                f"group_size >= 2, got {k}; set group_size (e.g. 4) or use advantage='raw'"
            )
        if k == 1:
            return
        if self.objective != "pg":
            raise ConfigError(
                f"group_size={k} samples several completions per prompt, which only "
                f"objective='pg' does (objective is {self.objective!r}); leave group_size at 1"
            )
        if self.greedy:
            raise ConfigError(
                f"group_size={k} with greedy=True gives K identical completions per prompt "
                "(every group advantage 0); sample (greedy=False) or leave group_size at 1"
            )
        if self.global_batch % k:
            raise ConfigError(
                f"global_batch {self.global_batch} is not a multiple of group_size {k}: each "
                f"step takes global_batch / group_size prompts, so pick a global_batch "
                f"divisible by {k}"
            )

    @property
    def run_name(self) -> str:
        return self.name or f"{self.task}-{self.method}-{self.objective}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option(s) {unknown}; valid options: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def fingerprint(self) -> str:
        """Hash of the fields that determine the result (not paths or logging)."""
        defaults = TrainConfig.__dataclass_fields__
        d = {
            k: v
            for k, v in self.to_dict().items()
            if k not in RESUMABLE_FIELDS
            and not (k in FINGERPRINT_OPTIONAL and v == defaults[k].default)
        }
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: TrainConfig) -> dict[str, tuple]:
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in RESUMABLE_FIELDS and a[k] != b[k]}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}: use one of {', '.join(allowed)}")
