"""The inner update: a short supervised fine-tune on a self-edit's training sequences.

Two kinds of update on the same frozen model: a fresh LoRA adapter (peft; r 32 / alpha 64 as
in the SEAL paper, on every linear map rather than the paper's q_proj+v_proj) or an SVF expert (one vector rescaling the singular
values of each adapted matrix). Every step is one full batch of the sequences (padded on the
right; padding never enters the loss), the number of steps is bounded, and an update whose loss
stops being finite or grows past ``diverge_factor`` times its first value is abandoned: the
model is restored and :class:`InnerUpdateDivergedError` says what to change.

``InnerUpdater.updated(seqs)`` applies an update for the duration of a ``with`` block;
``InnerUpdater.merge(seqs)`` writes it into the weights (sequential edits).

On a model cast to bf16 (the SEAL tables' ``seal_compute_dtype``) the update computes in bf16 while
what it trains stays fp32, as in the RL trainer: LoRA's matrices (peft keeps adapters fp32)
and SVF's z, whose change U diag(σ⊙(z−1)) Vᵀ is formed in bf16 and added to W in fp32 before
the cast. Merging into bf16 weights is refused: it would round small updates away.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from t2bench.errors import ConfigError, T2BenchError
from t2bench.svf import TargetSpec, compose, decompose
from t2bench.train.policy import SVFPolicy

__all__ = [
    "METHODS",
    "InnerConfig",
    "InnerResult",
    "InnerUpdateDivergedError",
    "InnerUpdater",
    "encode_sequences",
]

METHODS = ("lora", "svf")
#: learning rates used when ``InnerConfig.lr`` is None (chosen on training passages only:
#: results/seal/inner-lr/)
DEFAULT_LR = {"lora": 1e-3, "svf": 2e-2}
#: LoRA targets: every linear map of the language model. The SEAL paper's q_proj+v_proj stored
#: nothing in 8 steps on the 135M model (results/seal/inner-lr/)
ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


class InnerUpdateDivergedError(T2BenchError, FloatingPointError):
    """The inner fine-tune's loss became non-finite or grew far above its start."""


@dataclass
class InnerConfig:
    method: str = "lora"
    steps: int = 8
    lr: float | None = None  # None: DEFAULT_LR[method]
    lora_r: int = 32
    lora_alpha: int = 64
    lora_targets: str = ALL_LINEAR
    svf_modules: str = "mlp"
    svf_layers: str = "all"
    max_tokens: int = 256  # per sequence, longer ones are cut
    grad_clip: float = 1.0  # 0 disables
    diverge_factor: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown inner method {self.method!r}: use one of {METHODS}")
        if self.steps < 1:
            raise ConfigError(f"inner steps must be >= 1, got {self.steps}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"inner lr must be > 0, got {self.lr}")
        if self.diverge_factor <= 1:
            raise ConfigError(f"diverge_factor must be > 1, got {self.diverge_factor}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    def to_dict(self) -> dict:
        return {**asdict(self), "learning_rate": self.learning_rate}


@dataclass
class InnerResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    trainable: int = 0

    def to_dict(self) -> dict:
        return {
            "losses": self.losses,
            "seconds": round(self.seconds, 3),
            "trainable": self.trainable,
        }


def encode_sequences(tokenizer, texts: list[str], max_tokens: int, device=None):
    """Right-padded ids, attention mask and labels (-100 on padding) of ``texts`` + EOS.

    Padding is found from the attention mask, not the pad id: many tokenizers pad with the
    EOS id, and the EOS that ends each sequence must stay a target.
    """
    if not texts:
        raise ConfigError("no sequence to train on: pass at least one non-empty text")
    eos = tokenizer.eos_token_id
    rows = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"][: max_tokens - 1]
        rows.append(ids + ([eos] if eos is not None else []))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids.to(device), mask.to(device), labels.to(device)


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the non-padding targets."""
    return nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=-100,
    )


class InnerUpdater:
    """Inner updates of one model (kept in place; every update is undone unless merged)."""

    def __init__(self, model: nn.Module, tokenizer, cfg: InnerConfig, *, model_id: str = "model"):
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.model_id = model_id
        self._decomposition = None

    # ------------------------------------------------------------------ public

    @contextmanager
    def updated(self, texts: list[str]) -> Iterator[tuple[nn.Module, InnerResult]]:
        """The model with an update on ``texts`` applied, then restored."""
        if self.cfg.method == "lora":
            peft_model, result = self._train_lora(texts)
            peft_model.eval()
            try:
                yield peft_model, result
            finally:
                peft_model.unload()
        else:
            policy, result = self._train_svf(texts)
            with policy.generating() as m:
                yield m, result

    def merge(self, texts: list[str]) -> InnerResult:
        """Train on ``texts`` and write the update into the model's weights (fp32 only)."""
        if self._low_precision() is not None:
            raise ConfigError(
                f"merging an inner update into {self._low_precision()} weights rounds small "
                "updates away (a bf16 weight keeps ~3 significant digits): load the model in "
                "float32 for sequential edits"
            )
        if self.cfg.method == "lora":
            peft_model, result = self._train_lora(texts)
            peft_model.merge_and_unload()
            return result

        policy, result = self._train_svf(texts)
        with torch.no_grad():
            zs = {k: z.detach() for k, z in policy.z().items()}
            for key, z in zs.items():
                svd = policy.decomposition.svd[key]
                weight = policy._base[key]
                weight.copy_(compose(weight, svd, z))
                svd.S = svd.S * z.to(svd.S)  # W' = U diag(σ⊙z) Vᵀ: its SVD without a new SVD
        return result

    # ------------------------------------------------------------------ training

    def _optimise(self, params, forward, texts: list[str], restore) -> InnerResult:
        cfg = self.cfg
        device = next(self.model.parameters()).device
        ids, mask, labels = encode_sequences(self.tokenizer, texts, cfg.max_tokens, device)
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
        result = InnerResult(trainable=sum(p.numel() for p in params))
        t = time.perf_counter()
        for step in range(1, cfg.steps + 1):
            opt.zero_grad(set_to_none=True)
            loss = token_loss(forward(ids, mask), labels)
            value = float(loss.detach())
            result.losses.append(value)
            first = result.losses[0]
            if not torch.isfinite(loss) or (step > 1 and value > cfg.diverge_factor * first):
                restore()
                raise InnerUpdateDivergedError(
                    f"inner {cfg.method} update diverged at step {step}/{cfg.steps}: loss "
                    f"{first:.3g} -> {value:.3g}. The model is restored unchanged; lower the "
                    f"inner lr (now {cfg.learning_rate:g}) or the number of steps"
                )
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
        result.seconds = time.perf_counter() - t
        return result

    def _train_lora(self, texts: list[str]):
        from peft import LoraConfig, get_peft_model

        cfg = self.cfg
        targets = [m.strip() for m in cfg.lora_targets.split(",") if m.strip()]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            peft_model = get_peft_model(
                self.model,
                LoraConfig(
                    r=cfg.lora_r,
                    lora_alpha=cfg.lora_alpha,
                    lora_dropout=0.0,
                    target_modules=targets,
                ),
            )
        params = [p for p in peft_model.parameters() if p.requires_grad]

        def forward(ids, mask):
            return peft_model(input_ids=ids, attention_mask=mask, use_cache=False).logits

        result = self._optimise(params, forward, texts, restore=peft_model.unload)
        return peft_model, result

    def _decompose(self):
        if self._decomposition is None:
            self._decomposition = decompose(
                self.model,
                TargetSpec(self.cfg.svf_modules, self.cfg.svf_layers),
                model_id=self.model_id,
                progress=False,
            )
        return self._decomposition

    def _low_precision(self) -> torch.dtype | None:
        """The model's floating dtype where it is below fp32, else None."""
        dtype = next(p.dtype for p in self.model.parameters() if p.is_floating_point())
        return None if dtype == torch.float32 else dtype

    def _train_svf(self, texts: list[str]):
        # on a bf16 model the change to W is formed in bf16 (two matrix products per matrix and
        # step at bf16 speed) and added to W in fp32 (svf.compose)
        policy = SVFPolicy(self.model, self._decompose(), delta_dtype=self._low_precision())
        params = list(policy.vectors.parameters())
        result = self._optimise(params, policy, texts, restore=lambda: None)
        return policy, result
