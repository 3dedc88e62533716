"""SVF experts: one vector per adapted matrix, two parameterisations, mixing and permuting.

Parameterisations
- ``z``: the vector is z itself; W' = U diag(σ⊙z) Vᵀ. Identity: z = 1.
- ``sigmoid``: the vector is a logit p; z = sigmoid(p) rescaled so that Σσ⊙z = Σσ (the
  nuclear norm of W is kept, and W' is invariant to a global rescale of z). Identity: any
  constant p, exactly, because the σ-weighted mean below is computed around z₀.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from t2bench.errors import ConfigError, ExpertMismatchError

PARAMETERISATIONS = ("z", "sigmoid")
DEFAULT_SIGMOID_LOGIT = 0.1


@dataclass
class ExpertMeta:
    """What an expert fits and where it came from (saved as JSON beside the vectors)."""

    base_model: str
    shape_fingerprint: str
    module_set: str
    layers: list[int]
    shapes: dict[str, list[int]]
    parameterisation: str = "z"
    name: str = "expert"
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Expert:
    """Vectors keyed like the decomposition (``layers.<i>.<role>``) plus their metadata."""

    params: dict[str, torch.Tensor]
    meta: ExpertMeta

    @property
    def keys(self) -> list[str]:
        return list(self.params)

    def num_parameters(self) -> int:
        return sum(v.numel() for v in self.params.values())

    def to(self, device: torch.device | str) -> Expert:
        return Expert({k: v.to(device) for k, v in self.params.items()}, self.meta)


def expert_task(expert: Expert) -> str | None:
    """The task an expert was trained on, from its training config (None when not recorded)."""
    cfg = (expert.meta.provenance or {}).get("train_config") or {}
    return cfg.get("task") if isinstance(cfg, dict) else None


def serves(expert: Expert, label: str) -> bool:
    """Whether ``expert`` serves task ``label``: its recorded training task, else its name
    (``math``, ``math-…`` or ``math_…``)."""
    name = expert.meta.name.lower()
    task = expert_task(expert)
    if task is not None:
        return task == label
    return name == label or name.startswith((f"{label}-", f"{label}_"))


def _check_parameterisation(p: str) -> str:
    if p not in PARAMETERISATIONS:
        raise ConfigError(
            f"unknown parameterisation {p!r}: use one of {', '.join(PARAMETERISATIONS)}"
        )
    return p


def identity_expert(
    decomposition,
    *,
    parameterisation: str = "z",
    init_logit: float = DEFAULT_SIGMOID_LOGIT,
    noise_std: float = 0.0,
    seed: int = 0,
    name: str = "identity",
    provenance: dict | None = None,
) -> Expert:
    """An expert that leaves the model exactly as it is (with ``noise_std=0``).

    ``noise_std > 0`` perturbs the start point (seeded), as RL training may want.
    """
    _check_parameterisation(parameterisation)
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for t in decomposition.targets:
        base = 1.0 if parameterisation == "z" else init_logit
        v = torch.full((t.rank,), base, dtype=torch.float32)
        if noise_std:
            v = v + noise_std * torch.randn(t.rank, generator=gen)
        params[t.key] = v.to(decomposition.svd[t.key].S.device)
    meta = ExpertMeta(
        base_model=decomposition.model_id,
        shape_fingerprint=decomposition.shape_fingerprint,
        module_set=decomposition.spec.modules,
        layers=decomposition.layers,
        shapes={t.key: list(t.shape) for t in decomposition.targets},
        parameterisation=parameterisation,
        name=name,
        provenance=dict(provenance or {}, weight_fingerprint=decomposition.fingerprint),
    )
    return Expert(params, meta)


def sigmoid_scale(p: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """z = sigmoid(p) / (σ-weighted mean of sigmoid(p)); differentiable.

    The mean is computed as s₀ + Σσ(s − s₀)/Σσ, which equals Σσs/Σσ but is exactly s₀ when s
    is constant, so a constant logit gives z = 1 bit-exactly.
    """
    s = torch.sigmoid(p.float())
    sig = sigma.float()
    s0 = s[0]
    wmean = s0 + (sig * (s - s0)).sum() / sig.sum()
    return s / wmean


def effective_z(
    expert: Expert, sigmas: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The per-matrix scale z that multiplies σ, whatever the parameterisation."""
    if expert.meta.parameterisation == "z":
        return dict(expert.params)
    if expert.meta.parameterisation == "sigmoid":
        if sigmas is None:
            raise ConfigError(
                "a sigmoid-parameterised expert needs the singular values σ to give z"
            )
        return {k: sigmoid_scale(p, sigmas[k]) for k, p in expert.params.items()}
    raise ConfigError(f"unknown parameterisation {expert.meta.parameterisation!r}")


def check_same_layout(experts: Sequence[Expert]) -> None:
    """All experts adapt the same matrices with the same shapes (else a named mismatch)."""
    if not experts:
        raise ConfigError("no experts given: a mixture needs at least one expert")
    ref = experts[0]
    for e in experts[1:]:
        if e.meta.shape_fingerprint != ref.meta.shape_fingerprint or e.keys != ref.keys:
            only_a = sorted(set(ref.keys) - set(e.keys))[:3]
            only_b = sorted(set(e.keys) - set(ref.keys))[:3]
            raise ExpertMismatchError(
                f"cannot mix expert {e.meta.name!r} ({e.meta.module_set}, layers {_span(e.meta.layers)}) "
                f"with {ref.meta.name!r} ({ref.meta.module_set}, layers {_span(ref.meta.layers)}): "
                f"they adapt different matrices (only in {ref.meta.name!r}: {only_a}; only in "
                f"{e.meta.name!r}: {only_b}). Mix experts trained with the same module set and layers."
            )


def _span(layers: list[int]) -> str:
    if not layers:
        return "[]"
    return f"{layers[0]}..{layers[-1]} ({len(layers)})"


def mix(
    experts: Sequence[Expert],
    alphas: torch.Tensor | Sequence[float],
    sigmas: Mapping[str, torch.Tensor] | None = None,
    *,
    name: str = "mixture",
) -> Expert:
    """z' = Σ_k α_k z_k, with α of shape (K,) or (K, M) (one per expert per matrix).

    Mixes effective z (sigmoid experts are converted first), so the result is a ``z`` expert.
    """
    check_same_layout(experts)
    keys = experts[0].keys
    a = torch.as_tensor(alphas, dtype=torch.float32)
    k = len(experts)
    if a.shape == (k,):
        a = a[:, None].expand(k, len(keys))
    if a.shape != (k, len(keys)):
        raise ConfigError(
            f"alphas must have shape ({k},) or ({k}, {len(keys)}) for {k} experts over "
            f"{len(keys)} matrices; got {tuple(a.shape)}"
        )
    zs = [effective_z(e, sigmas) for e in experts]
    params = {}
    for j, key in enumerate(keys):
        params[key] = sum(a[i, j].to(zs[i][key].device) * zs[i][key] for i in range(k))
    meta = replace(
        experts[0].meta,
        parameterisation="z",
        name=name,
        provenance={
            "mixture_of": [e.meta.name for e in experts],
            "alphas": a.tolist()
            if a.shape[1] > 1 and not torch.all(a == a[:, :1])
            else a[:, 0].tolist(),
        },
    )
    return Expert(params, meta)


def permute(expert: Expert, seed: int) -> Expert:
    """Shuffle each matrix's vector with its own seeded permutation (the shuffled-σ control).

    The permutation of a matrix depends on ``seed`` and its key only, so it is reproducible
    and independent of which other matrices the expert adapts.
    """
    params = {}
    for key, v in expert.params.items():
        gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % 2**63)
        perm = torch.randperm(v.numel(), generator=gen).to(v.device)
        params[key] = v[perm]
    meta = replace(
        expert.meta,
        name=f"{expert.meta.name}-perm{seed}",
        provenance=dict(expert.meta.provenance, permuted_seed=seed, permuted_from=expert.meta.name),
    )
    return Expert(params, meta)
