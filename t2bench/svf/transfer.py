"""Cross-model transfer of SVF experts: carry an expert's z vectors to another model.

The paper transfers an expert between models whose adapted matrices have the same shapes
(Llama-3-8B → Mistral-7B), copying z layer by layer and rank by rank ("same-shape"). When
the shapes differ, "resample" maps each target layer to the same relative depth of the
source and each singular-value index to the same relative rank, interpolating linearly
(beyond the paper). Either way the result is a ``z`` expert made for the target model, so
it passes ``check_fits`` there (with ``allow_transfer=True``).

Pure math: imports neither lm-eval nor accelerate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from t2bench.errors import ConfigError, ExpertMismatchError
from t2bench.svf.decompose import Decomposition
from t2bench.svf.expert import Expert, ExpertMeta, effective_z, permute

TRANSFER_MODES = ("auto", "same-shape", "resample")


def resample_vector(z: torch.Tensor, size: int) -> torch.Tensor:
    """``z`` linearly interpolated to ``size`` entries over relative rank.

    Target index i sits at source position i/(size-1)·(len(z)-1), so the first and last
    singular values map to each other. Positions that land on a source index take its value
    exactly and a constant vector stays exactly constant (identity experts stay identity).
    ``size == len(z)`` returns an exact copy; ``size == 1`` keeps the first (largest-σ) entry.
    """
    if z.dim() != 1:
        raise ConfigError(f"resample_vector needs a 1-D vector, got shape {tuple(z.shape)}")
    if size < 1:
        raise ConfigError(f"resample_vector: size must be at least 1, got {size}")
    n = z.numel()
    if n == 0:
        raise ConfigError("resample_vector: cannot resample an empty vector")
    if size == n:
        return z.clone()
    if n == 1:
        return z.expand(size).clone()
    if size == 1:
        return z[:1].clone()
    # position i·(n-1)/(size-1), split into an integer part and an exact-rational fraction
    num = torch.arange(size, device=z.device, dtype=torch.long) * (n - 1)
    lo = num // (size - 1)
    hi = (lo + 1).clamp(max=n - 1)
    w = ((num % (size - 1)).double() / (size - 1)).to(
        z.dtype if z.is_floating_point() else torch.float32
    )
    a, b = z[lo], z[hi]
    return a + w * (b - a)


def _split_key(key: str) -> tuple[int, str]:
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != "layers" or not parts[1].isdigit():
        raise ExpertMismatchError(
            f"cannot transfer: matrix key {key!r} is not of the form 'layers.<i>.<role>'"
        )
    return int(parts[1]), parts[2]


def _check_mode(mode: str) -> str:
    if mode not in TRANSFER_MODES:
        raise ConfigError(f"unknown transfer mode {mode!r}: use one of {', '.join(TRANSFER_MODES)}")
    return mode


def _source_z(
    expert: Expert, source_sigmas: Mapping[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    """The expert's effective z, with a fix-naming error when σ is needed but missing."""
    if expert.meta.parameterisation == "sigmoid":
        if source_sigmas is None:
            raise ConfigError(
                f"expert {expert.meta.name!r} is sigmoid-parameterised, so its z depends on the "
                f"singular values of its source model {expert.meta.base_model!r}: pass "
                "source_sigmas=decompose(source_model, ...).sigmas() to transfer it"
            )
        missing = [k for k in expert.keys if k not in source_sigmas]
        if missing:
            raise ConfigError(
                f"source_sigmas lacks {len(missing)} of expert {expert.meta.name!r}'s matrices "
                f"(e.g. {missing[:3]}): decompose the source model {expert.meta.base_model!r} with "
                f"modules={expert.meta.module_set!r} and the expert's layers"
            )
    return {k: v.detach().float() for k, v in effective_z(expert, source_sigmas).items()}


def _same_shape(expert: Expert, target: Decomposition) -> bool:
    got = {k: tuple(v) for k, v in expert.meta.shapes.items()}
    return set(expert.keys) == set(got) and got == dict(target.shapes)


def _shape_mismatch(expert: Expert, target: Decomposition) -> str:
    got = {k: tuple(v) for k, v in expert.meta.shapes.items()}
    want = dict(target.shapes)
    only_e = sorted(set(got) - set(want))[:3]
    only_t = sorted(set(want) - set(got))[:3]
    differ = [
        f"{k}: expert {list(got[k])} vs target {list(want[k])}"
        for k in want
        if k in got and got[k] != want[k]
    ]
    parts = []
    if only_e:
        parts.append(f"only in the expert: {only_e}")
    if only_t:
        parts.append(f"only in the target: {only_t}")
    if differ:
        parts.append(f"other shapes: {', '.join(differ[:3])}")
    return "; ".join(parts) or "vector lengths differ from the recorded shapes"


def _transfer_same_shape(
    expert: Expert, zs: dict[str, torch.Tensor], target: Decomposition
) -> dict[str, torch.Tensor]:
    if not _same_shape(expert, target):
        raise ExpertMismatchError(
            f"mode='same-shape' needs expert {expert.meta.name!r} (base model "
            f"{expert.meta.base_model!r}) and target {target.model_id!r} to adapt the same matrices "
            f"with the same shapes; they differ ({_shape_mismatch(expert, target)}). "
            "Use mode='resample' (or 'auto') for a shape-adaptive transfer."
        )
    out = {}
    for t in target.targets:
        z = zs[t.key]
        if z.numel() != t.rank:
            raise ExpertMismatchError(
                f"expert {expert.meta.name!r}: vector {t.key} has {z.numel()} entries, the target "
                f"matrix has rank {t.rank}"
            )
        out[t.key] = z.clone()
    return out


def _transfer_resample(
    expert: Expert, zs: dict[str, torch.Tensor], target: Decomposition
) -> dict[str, torch.Tensor]:
    by_role: dict[str, dict[int, torch.Tensor]] = {}
    for key, z in zs.items():
        layer, role = _split_key(key)
        by_role.setdefault(role, {})[layer] = z
    src_layers = sorted({layer for per in by_role.values() for layer in per})
    tgt_roles = {t.role for t in target.targets}
    only_e = sorted(set(by_role) - tgt_roles)
    only_t = sorted(tgt_roles - set(by_role))
    if only_e or only_t:
        raise ExpertMismatchError(
            f"cannot transfer expert {expert.meta.name!r} ({expert.meta.module_set}) to "
            f"{target.model_id!r} decomposed for {target.spec.modules!r}: roles only in the expert: "
            f"{only_e or 'none'}; roles only in the target: {only_t or 'none'}. Decompose the target "
            f"with modules={expert.meta.module_set!r}."
        )
    for role, per in by_role.items():
        gaps = [layer for layer in src_layers if layer not in per]
        if gaps:
            raise ExpertMismatchError(
                f"expert {expert.meta.name!r} adapts role {role!r} in only some of its layers "
                f"(missing in layers {gaps[:4]}); resample needs every role in every source layer"
            )
    tgt_layers = target.layers
    ls, lt = len(src_layers), len(tgt_layers)
    position = {layer: j for j, layer in enumerate(tgt_layers)}
    out = {}
    for t in target.targets:
        j = position[t.layer]
        # source position s = j/(lt-1)·(ls-1), as integer part + exact fraction
        num, den = j * (ls - 1), max(lt - 1, 1)
        lo, frac = num // den, (num % den) / den
        a = resample_vector(by_role[t.role][src_layers[lo]], t.rank)
        if frac == 0:
            out[t.key] = a
        else:
            b = resample_vector(by_role[t.role][src_layers[lo + 1]], t.rank)
            out[t.key] = a + frac * (b - a)
    return out


def transfer_expert(
    expert: Expert,
    target: Decomposition,
    *,
    source_sigmas: Mapping[str, torch.Tensor] | None = None,
    mode: str = "auto",
    name: str | None = None,
) -> Expert:
    """``expert`` as a ``z`` expert for the model ``target`` was decomposed from.

    Works on the effective z (a sigmoid expert needs ``source_sigmas``, the singular values
    of its own model, since its z depends on them). ``mode``: "same-shape" (the paper's copy;
    keys and shapes must match), "resample" (relative depth and rank, linear interpolation)
    or "auto" (same-shape when they match, else resample).
    """
    _check_mode(mode)
    zs = _source_z(expert, source_sigmas)
    used = mode if mode != "auto" else ("same-shape" if _same_shape(expert, target) else "resample")
    if used == "same-shape":
        params = _transfer_same_shape(expert, zs, target)
    else:
        params = _transfer_resample(expert, zs, target)
    params = {k: v.to(target.svd[k].S.device) for k, v in params.items()}
    src_layers = sorted({_split_key(k)[0] for k in expert.keys})
    provenance: dict[str, Any] = {
        "transfer": used,
        "source_model": expert.meta.base_model,
        "source_expert": expert.meta.name,
        "source_layers": len(src_layers),
        "target_layers": len(target.layers),
        "source_parameterisation": expert.meta.parameterisation,
        "source_shape_fingerprint": expert.meta.shape_fingerprint,
        "source_provenance": dict(expert.meta.provenance),
    }
    meta = ExpertMeta(
        base_model=target.model_id,
        shape_fingerprint=target.shape_fingerprint,
        module_set=expert.meta.module_set,
        layers=target.layers,
        shapes={k: list(target.shapes[k]) for k in params},
        parameterisation="z",
        name=name if name is not None else expert.meta.name,
        provenance=provenance,
    )
    return Expert(params, meta)


def shuffled_transfer(expert: Expert, target: Decomposition, seed: int, **kw: Any) -> Expert:
    """The shuffled-σ control: ``permute(expert, seed)`` transferred to ``target``.

    Same values per matrix as the ordered transfer (when shapes match) but attached to the
    wrong singular directions; the seed is recorded in provenance as ``shuffled_seed``.
    """
    out = transfer_expert(permute(expert, seed), target, **kw)
    out.meta.provenance["shuffled_seed"] = seed
    return out
