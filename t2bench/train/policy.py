"""Trainable adapters behind one interface: SVF expert vectors, or a peft LoRA / IA3 adapter.

A policy is an ``nn.Module`` whose only trainable parameters are the adapter's, so it can be
handed to ``accelerator.prepare`` (DDP on several processes). ``forward`` returns logits with
the adapter applied and differentiable; ``reference_logits`` gives the frozen base model's;
``generating()`` yields a model with the adapter applied for ``generate``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from t2bench.errors import ConfigError
from t2bench.svf import (
    Decomposition,
    Expert,
    SVFPatcher,
    TargetSpec,
    compose,
    decompose,
    identity_expert,
    save_expert,
    sigmoid_scale,
)


def _pkey(key: str) -> str:
    return key.replace(".", "__")


class _Adapter(nn.Module):
    """Reading and writing the trainable tensors (checkpoints, best-so-far, export)."""

    def _trainable(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self._trainable().items()}

    @torch.no_grad()
    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        _check_state(self.trainable_state(), state)
        for k, v in self._trainable().items():
            v.copy_(state[k].to(v))


class SVFPolicy(_Adapter):
    """SVF: one trainable vector per adapted matrix; W' = W + U diag(σ⊙(z−1)) Vᵀ."""

    kind = "svf"

    def __init__(
        self,
        model: nn.Module,
        decomposition: Decomposition,
        *,
        parameterisation: str = "z",
        init_noise: float = 0.0,
        seed: int = 0,
    ):
        super().__init__()
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        self.decomposition = decomposition
        start = identity_expert(
            decomposition, parameterisation=parameterisation, noise_std=init_noise, seed=seed
        )
        self.meta = start.meta
        self.vectors = nn.ParameterDict(
            {_pkey(k): nn.Parameter(v.clone()) for k, v in start.params.items()}
        )
        self._weight_names = {t.key: f"{t.module_name}.weight" for t in decomposition.targets}
        params = dict(model.named_parameters())
        self._base = {k: params[n] for k, n in self._weight_names.items()}
        self.patcher = SVFPatcher(model, decomposition)

    def named_vectors(self) -> dict[str, torch.Tensor]:
        return {k: self.vectors[_pkey(k)] for k in self.decomposition.keys}

    _trainable = named_vectors

    def z(self) -> dict[str, torch.Tensor]:
        """Effective z per matrix (differentiable)."""
        vecs = self.named_vectors()
        if self.meta.parameterisation == "z":
            return vecs
        return {k: sigmoid_scale(v, self.decomposition.svd[k].S) for k, v in vecs.items()}

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra
    ) -> torch.Tensor:
        svd = self.decomposition.svd
        weights = {
            self._weight_names[k]: compose(self._base[k], svd[k], z) for k, z in self.z().items()
        }
        out = functional_call(
            self.model,
            weights,
            args=(),
            kwargs={
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "use_cache": False,
                **extra,
            },
            strict=False,
        )
        return out.logits

    @torch.no_grad()
    def reference_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra
    ) -> torch.Tensor:
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra
        ).logits

    @contextmanager
    def generating(self) -> Iterator[nn.Module]:
        with torch.no_grad():
            self.patcher.apply_z({k: v.detach() for k, v in self.z().items()}, name="policy")
        try:
            yield self.model
        finally:
            self.patcher.restore()

    def export(
        self, state: dict[str, torch.Tensor], out: Path, name: str, provenance: dict
    ) -> Path:
        """Write ``state`` as an expert file ``out/<name>.safetensors`` (never overwrites)."""
        meta = type(self.meta)(**{**self.meta.to_dict(), "name": name})
        meta.provenance = {**meta.provenance, **provenance}
        expert = Expert({k: v.float().cpu() for k, v in state.items()}, meta)
        return save_expert(expert, out / f"{name}.safetensors")


class PeftPolicy(_Adapter):
    """A peft adapter (LoRA or IA3) on the frozen base model."""

    def __init__(self, model: nn.Module, peft_config, kind: str):
        super().__init__()
        from peft import get_peft_model

        self.kind = kind
        self.peft = get_peft_model(model, peft_config)
        self.peft.train()  # adapter dropout on while training; generating() switches it off

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra
    ) -> torch.Tensor:
        return self.peft(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra
        ).logits

    @torch.no_grad()
    def reference_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra
    ) -> torch.Tensor:
        with self.peft.disable_adapter():
            return self.peft(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra
            ).logits

    @contextmanager
    def generating(self) -> Iterator[nn.Module]:
        was_training = self.peft.training
        self.peft.eval()
        try:
            yield self.peft
        finally:
            self.peft.train(was_training)

    def _trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.peft.named_parameters() if p.requires_grad}

    def export(
        self, state: dict[str, torch.Tensor], out: Path, name: str, provenance: dict
    ) -> Path:
        """Save the adapter with ``state`` as a peft folder ``out/<name>/`` plus provenance."""
        import json

        folder = out / name
        if folder.exists():
            raise FileExistsError(f"{folder} exists; pick another output_dir or name")
        current = self.trainable_state()
        self.load_trainable_state(state)
        self.peft.save_pretrained(str(folder), safe_serialization=True)
        self.load_trainable_state(current)
        (folder / "t2bench_provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        return folder


def _check_state(want: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    if set(want) != set(got) or any(want[k].shape != got[k].shape for k in want):
        missing = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        raise ConfigError(
            f"checkpoint does not fit this adapter (missing {missing}, unexpected {extra}, or "
            "other shapes): it was written by a run with another method or module set. Resume "
            "with the original configuration or start a new output_dir."
        )


def _peft_targets(cfg, names: str):
    """Module names for peft; on an image-text model, only the language model's (a regex)."""
    targets = [m.strip() for m in names.split(",") if m.strip()]
    if cfg.task != "vqa":
        return targets
    return rf".*language_model\.layers\.\d+\..*\.({'|'.join(targets)})"


def peft_config(cfg):
    """The peft config of a LoRA / IA3 baseline (``cfg`` is a TrainConfig)."""
    from peft import IA3Config, LoraConfig, TaskType

    if cfg.method == "lora":
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=_peft_targets(cfg, cfg.lora_targets),
        )
    targets = [m.strip() for m in cfg.ia3_targets.split(",") if m.strip()]
    if cfg.task == "vqa":
        raise ConfigError("IA3 on an image-text model is not supported: use method=lora or svf")
    return IA3Config(
        task_type=TaskType.CAUSAL_LM,
        target_modules=targets,
        feedforward_modules=[m for m in targets if m in ("down_proj", "fc2", "w2")],
    )


def build_policy(cfg, model: nn.Module, model_id: str, device: torch.device) -> nn.Module:
    """The policy ``cfg.method`` asks for, on ``device``."""
    model.to(device)
    if cfg.method == "svf":
        decomp = decompose(
            model,
            TargetSpec(cfg.modules, cfg.layers, cfg.tower),
            model_id=model_id,
            progress=cfg.progress,
        )
        for svd in decomp.svd.values():
            svd.U, svd.S, svd.Vh = svd.U.to(device), svd.S.to(device), svd.Vh.to(device)
        return SVFPolicy(
            model,
            decomp,
            parameterisation=cfg.parameterisation,
            init_noise=cfg.init_noise,
            seed=cfg.seed,
        ).to(device)
    return PeftPolicy(model, peft_config(cfg), cfg.method).to(device)
