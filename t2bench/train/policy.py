"""Trainable adapters behind one interface: SVF expert vectors, or a peft LoRA / IA3 adapter.

A policy is an ``nn.Module`` whose only trainable parameters are the adapter's, so it can be
handed to ``accelerator.prepare`` (DDP on several processes). ``forward`` returns logits with
the adapter applied and differentiable; ``reference_logits`` gives the frozen base model's;
``generating()`` yields a model with the adapter applied for ``generate``.

``select`` (a (batch, sequence) bool mask) asks for the logits of those positions only, as an
(N, vocab) tensor in ``logits[select]`` order: the LM head then runs on N rows instead of every
position, which for RL (long prompts, short completions) is most of the head's cost.

With ``compute_dtype`` bfloat16 the frozen model computes in bf16 while what is trained stays
fp32: SVF's vectors (and so AdamW's state) and the SVD factors, and the composed weight is
W' = W + U diag(σ⊙(z−1)) Vᵀ computed in fp32 from an fp32 copy of W, cast to bf16 once for the
matmul. A small change to z therefore survives as a change of the bf16 weight whenever it
exceeds bf16's rounding step of W', instead of being lost in a bf16 sum. ``svf_delta_dtype``
"compute" forms only the change U diag(σ⊙(z−1)) Vᵀ (and its backward) in bf16, from bf16
copies of U and Vᵀ, and still adds it to W in fp32: the change's rounding is relative to the
change, far below W''s, and the two matrix products per matrix and step run at bf16 speed.
peft adapters are kept fp32 on the bf16 base (peft casts activations to the adapter's dtype
and back).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from t2bench.core.io import output_errors, replacing
from t2bench.errors import ConfigError
from t2bench.generation import cache_argument, logits_at
from t2bench.models import resolve_dtype
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


def cast_frozen(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast ``module``'s frozen floating-point parameters to ``dtype`` in place.

    Trainable parameters (the adapter) keep their dtype, and so does their optimizer state.
    Buffers are left alone: the rotary frequencies stay fp32 as Hugging Face keeps them.
    Parameter objects stay the same (``.data`` is replaced), so references to them hold.
    """
    for p in module.parameters():
        if not p.requires_grad and p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)


@dataclass
class GroupedBatch:
    """A micro-batch whose rows come in groups of ``k`` identical prompts (the K samples per
    prompt of group-relative policy gradient): row ``b`` is ``prompts[b // k]`` followed by
    ``completions[b]``. Passed to a policy as ``groups=``, each prompt runs through the model
    once and its keys and values are repeated for the group's completions."""

    prompts: list[list[int]]  # one per group
    completions: list[list[int]]  # one per row, len(prompts) * k of them, each non-empty
    k: int
    pad_id: int

    def __post_init__(self) -> None:
        if len(self.completions) != len(self.prompts) * self.k:
            raise ValueError(
                f"{len(self.completions)} completions for {len(self.prompts)} prompts × k={self.k}"
            )
        if any(not c for c in self.completions):
            raise ValueError("every completion needs at least one token")

    def rows(self) -> list[list[int]]:
        """Each row's prompt ids (what ``join_batch`` takes)."""
        return [self.prompts[b // self.k] for b in range(len(self.completions))]


def grouped_logits(head_model: nn.Module, call, g: GroupedBatch, device) -> torch.Tensor:
    """The logits at every completion-token position of ``g``, as ``(N, vocab)`` rows in the
    order of ``logits[logit_positions(target)]`` for ``join_batch(g.rows(), g.completions)``.

    Exactly the forward of the joined batch, with each prompt computed once: the prompts run
    left-padded (position ids from the mask) into a key/value cache, the cache is repeated
    ``k`` times along the batch (differentiably: gradients of the k copies add up), then the
    completions run on it. The first completion token is predicted by the prompt's last
    position, the others by the completion positions before them. ``call(**kwargs)`` runs the
    model (with the adapter applied, or the reference); the LM head runs on the needed rows
    only (:func:`logits_at`).
    """
    from transformers import DynamicCache

    k, pad = g.k, g.pad_id
    width = max(len(p) for p in g.prompts)
    p_ids = torch.full((len(g.prompts), width), pad, dtype=torch.long)
    p_mask = torch.zeros_like(p_ids)
    for i, p in enumerate(g.prompts):
        p_ids[i, width - len(p) :] = torch.tensor(p)
        p_mask[i, width - len(p) :] = 1
    p_ids, p_mask = p_ids.to(device), p_mask.to(device)
    p_pos = (p_mask.cumsum(-1) - 1).clamp_min(0)
    last = torch.zeros_like(p_mask, dtype=torch.bool)
    last[:, -1] = True
    cache = DynamicCache()
    cache_arg = cache_argument(head_model)
    first = logits_at(
        head_model,
        last,
        lambda: call(
            input_ids=p_ids,
            attention_mask=p_mask,
            position_ids=p_pos,
            use_cache=True,
            **{cache_arg: cache},
        ),
    )  # (prompts, vocab): the prediction of each group's first completion token
    cache.batch_repeat_interleave(k)
    n = [len(c) for c in g.completions]
    c_width = max(n)
    c_ids = torch.full((len(n), c_width), pad, dtype=torch.long)
    c_mask = torch.zeros_like(c_ids)
    sel = torch.zeros((len(n), c_width), dtype=torch.bool)
    for b, c in enumerate(g.completions):
        c_ids[b, : len(c)] = torch.tensor(c)
        c_mask[b, : len(c)] = 1
        sel[b, : len(c) - 1] = True  # position j predicts completion token j + 1
    c_ids, c_mask, sel = c_ids.to(device), c_mask.to(device), sel.to(device)
    full_mask = torch.cat([p_mask.repeat_interleave(k, dim=0), c_mask], dim=1)
    c_pos = p_mask.sum(-1).repeat_interleave(k)[:, None] + torch.arange(c_width, device=device)
    rest = logits_at(
        head_model,
        sel,
        lambda: call(
            input_ids=c_ids,
            attention_mask=full_mask,
            position_ids=c_pos,
            use_cache=True,
            **{cache_arg: cache},
        ),
    )
    pieces, start = [], 0
    for b, length in enumerate(n):
        pieces += [first[b // k : b // k + 1], rest[start : start + length - 1]]
        start += length - 1
    return torch.cat(pieces)


def _run(head_model, call, input_ids, attention_mask, select, groups, extra) -> torch.Tensor:
    """Logits of a joined batch (``input_ids``, ``attention_mask``, ``select``), or of a
    :class:`GroupedBatch` with each prompt run once (:func:`grouped_logits`)."""
    if groups is not None:
        if extra:
            raise ValueError(f"grouped batches take no extra model inputs, got {sorted(extra)}")
        return grouped_logits(head_model, call, groups, input_ids.device)
    return logits_at(
        head_model,
        select,
        lambda: call(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra),
    )


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
        compute_dtype: torch.dtype | None = None,
        delta_dtype: torch.dtype | None = None,
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
        # what W' is composed from: the live weights, or fp32 copies of them (taken before the
        # cast) when the model computes in a lower precision
        copies = None
        if compute_dtype is not None and any(p.dtype != compute_dtype for p in params.values()):
            copies = {k: w.detach().float().clone() for k, w in self._base.items()}
            cast_frozen(model, compute_dtype)
        self._source = copies if copies is not None else self._base
        # U and Vᵀ in delta_dtype (copied once) when the change to W is formed in that dtype
        self._factors = {}
        if delta_dtype is not None:
            svd = decomposition.svd
            self._factors = {
                k: (svd[k].U.to(delta_dtype), svd[k].Vh.to(delta_dtype)) for k in self._base
            }
        # the patcher composes from its own snapshot of the weights unless given fp32 copies
        self.patcher = SVFPatcher(model, decomposition, sources=copies)

    @property
    def delta_dtype(self) -> torch.dtype:
        """The dtype the change U diag(σ⊙(z−1)) Vᵀ is formed in (fp32 unless ``delta_dtype``)."""
        return next((u.dtype for u, _ in self._factors.values()), torch.float32)

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
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        select: torch.Tensor | None = None,
        groups: GroupedBatch | None = None,
        **extra,
    ) -> torch.Tensor:
        weights = {self._weight_names[k]: w for k, w in self._composed().items()}

        def call(**kwargs):
            return functional_call(self.model, weights, args=(), kwargs=kwargs, strict=False)

        return _run(self.model, call, input_ids, attention_mask, select, groups, extra)

    @torch.no_grad()
    def reference_logits(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        select: torch.Tensor | None = None,
        groups: GroupedBatch | None = None,
        **extra,
    ) -> torch.Tensor:
        return _run(self.model, self.model, input_ids, attention_mask, select, groups, extra)

    def _versions(self) -> tuple[int, ...]:
        return tuple(v._version for v in self.vectors.values())

    def _compose_all(self) -> dict[str, torch.Tensor]:
        """W' per decomposition key, differentiable in z: composed in the source's dtype (fp32
        under bf16 compute; the change to W in bf16 with ``delta_dtype``), then cast to the
        live weight's dtype for the matmul; the casts are differentiable, so grads reach fp32
        z."""
        svd = self.decomposition.svd
        return {
            k: compose(self._source[k], svd[k], z, self._factors.get(k)).to(self._base[k].dtype)
            for k, z in self.z().items()
        }

    def _composed(self) -> dict[str, torch.Tensor]:
        """The weights for a differentiable forward: those composed for sampling at the same z
        (one composition per RL step instead of two; used once, then dropped), else new ones."""
        cached = self.__dict__.pop("_for_forward", None)
        if cached is not None and cached[0] == self._versions() and torch.is_grad_enabled():
            return cached[1]
        return self._compose_all()

    @contextmanager
    def generating(self) -> Iterator[nn.Module]:
        # composed with autograd on (z moves only in optimizer.step, which bumps its version),
        # so the next forward at the same z reuses these weights and their graph
        with torch.enable_grad():
            weights = self._compose_all()
        self.__dict__["_for_forward"] = (self._versions(), weights)
        self.patcher.apply_weights({k: w.detach() for k, w in weights.items()}, name="policy")
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
    """A peft adapter (LoRA, IA3 or TinyLoRA) on the frozen base model."""

    def __init__(self, model: nn.Module, peft_config, kind: str):
        super().__init__()
        from peft import get_peft_model

        self.kind = kind
        self.peft = get_peft_model(model, peft_config)
        self.peft.train()  # adapter dropout on while training; generating() switches it off

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        select: torch.Tensor | None = None,
        groups: GroupedBatch | None = None,
        **extra,
    ) -> torch.Tensor:
        return _run(self.peft, self.peft, input_ids, attention_mask, select, groups, extra)

    @torch.no_grad()
    def reference_logits(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        select: torch.Tensor | None = None,
        groups: GroupedBatch | None = None,
        **extra,
    ) -> torch.Tensor:
        with self.peft.disable_adapter():
            return self.forward(input_ids, attention_mask, select, groups, **extra)

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
        # whole or not at all: a full disk leaves no partial adapter folder, and one error
        # naming the cause (peft's writer raises safetensors' bare SafetensorError)
        try:
            with output_errors(folder, "nothing partial was left", "adapter"):
                with replacing(folder, folder=True) as tmp:
                    self.peft.save_pretrained(str(tmp), safe_serialization=True)
                    (tmp / "t2bench_provenance.json").write_text(
                        json.dumps(provenance, indent=2) + "\n"
                    )
        finally:
            self.load_trainable_state(current)
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
    """The peft config of a LoRA / IA3 / TinyLoRA baseline (``cfg`` is a TrainConfig)."""
    from peft import IA3Config, LoraConfig, TaskType

    if cfg.method == "lora":
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=_peft_targets(cfg, cfg.lora_targets),
        )
    if cfg.method == "tinylora":
        from peft import TinyLoraConfig

        # v starts at 0: the adapter is the identity at step 0, as SVF's z = 1 is; the fixed
        # projections are drawn from the run's seed and saved with the adapter
        return TinyLoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=cfg.tinylora_r,
            u=cfg.tinylora_u,
            weight_tying=cfg.tinylora_tying,
            target_modules=_peft_targets(cfg, cfg.tinylora_targets),
            projection_seed=cfg.seed,
            init_weights=True,
        )
    targets = [m.strip() for m in cfg.ia3_targets.split(",") if m.strip()]
    if cfg.task == "vqa":
        raise ConfigError("IA3 on an image-text model is not supported: use method=lora or svf")
    return IA3Config(
        task_type=TaskType.CAUSAL_LM,
        target_modules=targets,
        feedforward_modules=[m for m in targets if m in ("down_proj", "fc2", "w2")],
    )


#: /proc/cpuinfo flags of CPUs with native bf16 arithmetic (AVX-512 BF16, AMX). Without them
#: torch's bf16 matmul runs through a slow path: on an AVX2-only AMD EPYC a 2048x576x1536
#: linear layer's forward + backward ran 13x slower in bf16 than in fp32
#: (``python -m t2bench.bench.matmul_dtype``).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The :data:`BF16_CPU_FLAGS` this CPU reports (empty where /proc/cpuinfo is absent)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return [f for f in BF16_CPU_FLAGS if f in flags]


def bf16_pays(device: torch.device | str) -> bool:
    """Whether bf16 compute is faster than fp32 on ``device``: a CUDA GPU that supports bf16,
    or a CPU with native bf16 arithmetic (:func:`cpu_bf16_flags`)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(cpu_bf16_flags())


def compute_dtype(cfg, device: torch.device | str = "cpu") -> torch.dtype | None:
    """The dtype to cast the frozen model to, or None to compute in the dtype it was loaded in.

    ``cfg.compute_dtype`` float32 (the default, also when the field is absent) casts nothing,
    so a run that loads ``dtype=bfloat16`` keeps computing as it always did; ``auto`` is
    bfloat16 where :func:`bf16_pays` on ``device``, else float32.
    """

    dtype = resolve_dtype(compute_dtype_name(getattr(cfg, "compute_dtype", "float32"), device))
    return None if dtype == torch.float32 else dtype


def compute_dtype_name(name: str, device: torch.device | str = "cpu") -> str:
    """``name`` with ``auto`` resolved: bfloat16 where :func:`bf16_pays` on ``device``, else
    float32; any other name is returned as it is."""
    if name == "auto":
        return "bfloat16" if bf16_pays(device) else "float32"
    return name


def build_policy(cfg, model: nn.Module, model_id: str, device: torch.device) -> nn.Module:
    """The policy ``cfg.method`` asks for, on ``device``.

    The model is decomposed (SVF) or wrapped (peft) in the dtype it was loaded in, and only
    then are its frozen weights cast to ``cfg.compute_dtype``: the SVD (and its cache entry
    and fingerprint) is that of the loaded weights, and the adapter starts in fp32.
    """
    dtype = compute_dtype(cfg, device)
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
            compute_dtype=dtype,
            delta_dtype=dtype if cfg.svf_delta_dtype == "compute" else None,
        ).to(device)
    policy = PeftPolicy(model, peft_config(cfg), cfg.method).to(device)
    if dtype is not None:
        cast_frozen(policy, dtype)
    return policy
