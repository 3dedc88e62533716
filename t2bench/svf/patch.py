"""Compose adapted weights into a live model and put the base weights back.

W' = W + U diag(σ⊙(z−1)) Vᵀ. For an exact SVD this is U diag(σ⊙z) Vᵀ; written as a change
to W it keeps the (fp32 round-off) residual W − UΣVᵀ, so z ≡ 1 returns W bit-exactly and
matrices an expert leaves at 1 are skipped. Weights are written in place (``copy_``), so
parameter objects, hooks and optimisers that hold them stay valid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from t2bench.errors import ExpertMismatchError
from t2bench.svf.decompose import Decomposition, MatrixSVD
from t2bench.svf.expert import Expert, effective_z
from t2bench.svf.snapshot import BaseStore, make_store


def compose(
    base: torch.Tensor,
    svd: MatrixSVD,
    z: torch.Tensor,
    factors: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The adapted weight W + U diag(σ⊙(z−1)) Vᵀ in ``base``'s dtype; differentiable in z.

    ``factors`` (U, Vh), e.g. bf16 copies of the SVD's, form the change U diag(σ⊙(z−1)) Vᵀ in
    their dtype: it is still added to ``base`` in fp32. Where W' is then cast to bf16 anyway,
    the change's own bf16 rounding (relative to the change, not to W) is far below W''s.
    """
    U, Vh = factors if factors is not None else (svd.U, svd.Vh)
    scale = svd.S * (z.to(svd.S) - 1.0)
    delta = (U * scale.to(U.dtype)) @ Vh
    return (base.float() + delta.float()).to(base.dtype)


#: How to ask for a cross-model transfer, by caller: Python and the t2bench CLI, or lm-eval's
#: model_args (the backends pass the latter).
TRANSFER_HINT = "pass allow_transfer=True (CLI: --transfer)"
TRANSFER_HINT_LM_EVAL = "add transfer=true to --model_args"


def check_fits(
    expert: Expert,
    decomposition: Decomposition,
    *,
    allow_transfer: bool = False,
    transfer_hint: str = TRANSFER_HINT,
) -> None:
    """Raise a named error unless ``expert`` adapts exactly the decomposed matrices.

    Same shapes under another base-model id is a transfer: allowed only when asked for (the
    error says how: ``transfer_hint``).
    """
    meta = expert.meta
    want = decomposition.shapes
    got = {k: tuple(v) for k, v in meta.shapes.items()}
    if set(got) != set(want):
        only_e = sorted(set(got) - set(want))
        only_m = sorted(set(want) - set(got))
        raise ExpertMismatchError(
            f"expert {meta.name!r} adapts {len(got)} matrices ({meta.module_set}, layers "
            f"{_short(meta.layers)}) but the model was decomposed for {len(want)} "
            f"({decomposition.spec.modules}, layers {_short(decomposition.layers)}); "
            f"only in the expert: {only_e[:4]}{'...' if len(only_e) > 4 else ''}; only in the model: "
            f"{only_m[:4]}{'...' if len(only_m) > 4 else ''}. Decompose the model with "
            f"modules={meta.module_set!r} and the expert's layers, or use an expert made for this model."
        )
    bad = [(k, got[k], want[k]) for k in want if got[k] != want[k]]
    if bad:
        examples = ", ".join(f"{k}: expert {list(g)} vs model {list(w)}" for k, g, w in bad[:3])
        raise ExpertMismatchError(
            f"expert {meta.name!r} (base model {meta.base_model!r}) does not fit model "
            f"{decomposition.model_id!r}: {len(bad)} of {len(want)} matrices have other shapes "
            f"({examples}). Use an expert trained for this model, or a shape-adaptive transfer."
        )
    for k, v in expert.params.items():
        if v.numel() != min(want[k]):
            raise ExpertMismatchError(
                f"expert {meta.name!r}: vector {k} has {v.numel()} entries, the model's matrix has rank {min(want[k])}"
            )
    if meta.base_model != decomposition.model_id and not allow_transfer:
        raise ExpertMismatchError(
            f"expert {meta.name!r} was made for {meta.base_model!r}, the model is "
            f"{decomposition.model_id!r}. Their adapted matrices have the same shapes, so it can be "
            f"applied as a cross-model transfer: {transfer_hint}."
        )


def _short(layers: list[int]) -> str:
    return f"{layers[0]}..{layers[-1]} ({len(layers)})" if layers else "[]"


class SVFPatcher:
    """Applies experts to one model's decomposed matrices and restores the base weights.

    The base weights are kept by a :mod:`~t2bench.svf.snapshot` store: ``snapshot="device"``
    (the default) copies them next to the weights on the first apply, ``"cpu"`` into host
    memory, ``"disk"`` keeps no copy and reads them from the safetensors files in
    ``weights_folder``. Restore writes them back, so the model is bit-identical afterwards
    with each. ``compositions`` counts matrices composed so far. ``sources`` (by key) are the
    matrices W' is composed from when they are not the live weights themselves, e.g. fp32
    copies of a model that computes in bf16: W' is then formed in fp32 and rounded to the
    weight's dtype once, as it is written.
    """

    def __init__(
        self,
        model: nn.Module,
        decomposition: Decomposition,
        sources: Mapping[str, torch.Tensor] | None = None,
        *,
        snapshot: str | BaseStore = "device",
        weights_folder: str | os.PathLike[str] | None = None,
    ):
        self.model = model
        self.decomposition = decomposition
        self._sources = dict(sources or {})
        modules = dict(model.named_modules())
        self._weights: dict[str, nn.Parameter] = {
            t.key: modules[t.module_name].weight for t in decomposition.targets
        }
        self.store = (
            snapshot
            if isinstance(snapshot, BaseStore)
            else make_store(
                snapshot,
                folder=weights_folder,
                names={t.key: t.module_name for t in decomposition.targets},
                weights=self._weights,
            )
        )
        self._taken = False
        self.active: str | None = None
        self.compositions = 0
        self.applies = 0
        self.compose_seconds = 0.0

    @property
    def snapshot(self) -> str:
        """Where the base weights are kept: device, cpu or disk."""
        return self.store.kind

    def snapshot_bytes(self) -> dict[str, int]:
        """Bytes the base-weight store holds, by device type (empty before the first apply)."""
        return self.store.nbytes()

    def _snapshot(self) -> None:
        if not self._taken:
            self.store.take(self._weights)
            self._taken = True

    @torch.no_grad()
    def apply(self, expert: Expert, *, allow_transfer: bool = False) -> None:
        """Replace the adapted weights by the expert's W' (from the base, never stacked)."""
        check_fits(expert, self.decomposition, allow_transfer=allow_transfer)
        self.apply_z(effective_z(expert, self.decomposition.sigmas()), name=expert.meta.name)

    @torch.no_grad()
    def apply_z(self, zs: Mapping[str, torch.Tensor], name: str = "custom") -> None:
        """Apply raw z vectors (keys as in the decomposition; missing keys stay base)."""
        self._snapshot()
        t0 = time.perf_counter()
        for key, weight in self._weights.items():
            base = self.store.get(key, weight)
            z = zs.get(key)
            if z is None or bool(torch.all(z == 1)):
                weight.copy_(base)
                continue
            source = self._sources.get(key, base)
            weight.copy_(compose(source, self.decomposition.svd[key], z.to(base.device)))
            self.compositions += 1
        self.compose_seconds += time.perf_counter() - t0
        self.applies += 1
        self.active = name

    @torch.no_grad()
    def apply_weights(self, weights: Mapping[str, torch.Tensor], name: str = "custom") -> None:
        """Write adapted weights W' composed elsewhere (keys as in the decomposition; missing
        keys stay base), e.g. by a trainer that composed them once for several uses."""
        self._snapshot()
        for key, weight in self._weights.items():
            w = weights.get(key)
            if w is None:
                weight.copy_(self.store.get(key, weight))
                continue
            weight.copy_(w)
            self.compositions += 1
        self.applies += 1
        self.active = name

    @torch.no_grad()
    def restore(self) -> None:
        """Put the base weights back, bit-exactly."""
        if self._taken:
            for key, weight in self._weights.items():
                weight.copy_(self.store.get(key, weight))
        self.active = None

    def is_base(self) -> bool:
        """True when every adapted weight equals the base bit for bit (or nothing was applied)."""
        return (
            all(torch.equal(w, self.store.get(k, w)) for k, w in self._weights.items())
            if self._taken
            else True
        )

    @contextmanager
    def use(self, expert: Expert, *, allow_transfer: bool = False) -> Iterator[nn.Module]:
        """``with patcher.use(expert): ...`` runs with the expert applied, then restores."""
        self.apply(expert, allow_transfer=allow_transfer)
        try:
            yield self.model
        finally:
            self.restore()
