"""A bound dispatcher without lm-eval: load the model and experts, decompose, bind.

For scripts and reports that run first passes on plain prompts (confusion matrices, timing);
the ``t2`` backend binds its dispatcher itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from t2bench.dispatch.base import DispatchContext, Dispatcher, make_dispatcher
from t2bench.models import LoadedModel, load_model
from t2bench.svf import SVFPatcher, TargetSpec, check_fits, decompose, load_experts
from t2bench.svf.expert import check_same_layout


@dataclass
class Bound:
    dispatcher: Dispatcher
    lm: LoadedModel
    patcher: SVFPatcher | None


def load_bound(
    spec: str,
    *,
    pretrained: str | None = None,
    experts: str | list[str] | None = None,
    device: str | None = None,
    batch_size: int = 16,
    lm: LoadedModel | None = None,
) -> Bound:
    """``make_dispatcher(spec, experts)`` bound to a freshly loaded (or given) model."""
    lm = lm or load_model(pretrained, device=device)
    paths = [experts] if isinstance(experts, str) else list(experts or [])
    loaded = [e for p in paths for e in load_experts(p, device=lm.model.device)]
    table = {e.meta.name: e for e in loaded}
    patcher = None
    if loaded:
        check_same_layout(loaded)
        meta = loaded[0].meta
        dec = decompose(
            lm.model,
            TargetSpec(meta.module_set, ",".join(map(str, meta.layers))),
            model_id=lm.model_id,
        )
        for e in loaded:
            check_fits(e, dec)
        patcher = SVFPatcher(lm.model, dec)
    dispatcher = make_dispatcher(spec, table)
    dispatcher.bind(
        DispatchContext(
            model=lm.model,
            tokenizer=lm.tokenizer,
            experts=table,
            patcher=patcher,
            model_id=lm.model_id,
            batch_size=batch_size,
        )
    )
    return Bound(dispatcher, lm, patcher)
