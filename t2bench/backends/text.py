"""``lm_eval --model t2``: HFLM with SVF experts chosen per request (text models).

See :mod:`t2bench.backends.adapt` for the per-request grouping shared with ``t2-vlm``.
"""

from __future__ import annotations

import inspect

from lm_eval.models.huggingface import HFLM

from t2bench.backends.adapt import (
    T2_ARGS,
    ExpertDispatchMixin,
    _as_bool,
    check_snapshot,
    launch_accelerator,
    merge_adapter,
    process_device,
    refuse_peft_with_experts,
    split_expert_paths,
)
from t2bench.backends.shared_context import shared_context_loglikelihood
from t2bench.errors import ConfigError
from t2bench.models import load_model

__all__ = [
    "T2LM",
    "T2_ARGS",
    "hflm_args",
    "merge_adapter",
    "split_expert_paths",
    "valid_model_args",
]

# HFLM arguments that t2 sets itself from the loaded model.
_MANAGED = {
    "pretrained",
    "tokenizer",
    "dtype",
    "device",
    "backend",
    "revision",
    "subfolder",
    "peft",
    "delta",
    "gguf_file",
    "parallelize",
    "tp_plan",
    "autogptq",
    "gptqmodel",
}


def hflm_args(cls=HFLM) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    out = {
        p for p, v in params.items() if p != "self" and v.kind is not inspect.Parameter.VAR_KEYWORD
    }
    if cls is not HFLM:
        out |= hflm_args(HFLM)
    return out - _MANAGED


def valid_model_args() -> list[str]:
    return sorted(T2_ARGS | hflm_args())


class T2LM(ExpertDispatchMixin, HFLM):
    """An HFLM whose adapted matrices are rewritten per request group by SVF experts."""

    _lm_base = HFLM

    def __init__(
        self,
        pretrained: str | None = None,
        experts=None,
        dispatch=None,
        modules: str | None = None,
        layers: str | None = None,
        transfer=False,
        peft: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        snapshot: str = "device",
        share_context=True,
        **kwargs,
    ) -> None:
        unknown = sorted(set(kwargs) - hflm_args())
        if unknown:
            raise ConfigError(
                f"unknown model_args for t2: {', '.join(unknown)}. Valid: {', '.join(valid_model_args())}"
            )
        from t2bench.vlm.assemble import is_vlm_folder

        if pretrained and is_vlm_folder(pretrained):
            raise ConfigError(
                f"{pretrained} is an image-text model: evaluate it with --model t2-vlm "
                "(same model_args), not --model t2"
            )
        snapshot = check_snapshot(snapshot)
        accelerator = launch_accelerator()  # None unless launched with several processes
        lm = load_model(pretrained, dtype=dtype, device=process_device(accelerator, device))
        refuse_peft_with_experts(peft, experts)
        if peft:
            # HFLM ignores peft= when handed a model object; merge the adapter here instead.
            lm.model = merge_adapter(lm.model, peft)
        super().__init__(pretrained=lm.model, tokenizer=lm.tokenizer, **kwargs)
        self.peft = peft or None
        self.model_id = lm.model_id
        self.share_context = _as_bool(share_context, "share_context")
        self._join_data_parallel(accelerator)  # before the set-up: its guard reads world_size
        self._setup_experts(
            split_expert_paths(experts),
            dispatch,
            modules,
            layers,
            transfer,
            snapshot=snapshot,
            source=lm.path,
        )

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        """Requests that share a context encode it once (:mod:`~t2bench.backends.shared_context`;
        ``share_context=false`` or ``batch_size=auto``: HFLM's one sequence per request)."""
        if not self.share_context or self.batch_size == "auto" or override_bs is not None:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)

        def cache(key, answer):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)

        return shared_context_loglikelihood(
            self.model,
            requests,
            batch_size=int(self.batch_size),
            max_length=self.max_length,
            fallback=lambda rest: super(T2LM, self)._loglikelihood_tokens(rest, disable_tqdm),
            on_answer=cache,
            pad_id=self.tokenizer.pad_token_id or 0,
            softmax_dtype=self.softmax_dtype,
            progress=not disable_tqdm and self.rank == 0,
        )

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self._dispatched(requests, super().loglikelihood, disable_tqdm=disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self._dispatched(requests, super().loglikelihood_rolling, disable_tqdm=disable_tqdm)

    def generate_until(self, requests, disable_tqdm: bool = False):
        return self._dispatched(requests, super().generate_until, disable_tqdm=disable_tqdm)
