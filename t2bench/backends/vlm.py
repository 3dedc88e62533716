"""``lm_eval --model t2-vlm``: lm-eval's multimodal HF backend with SVF experts (or a merged
LoRA) on the language model of an image-text model, optionally on its vision tower too.

A separate class from ``t2`` because lm-eval routes image requests by the backend class
(``MULTIMODAL``) and its multimodal parent loads a processor, not a tokenizer. Same model_args
as ``t2`` plus ``tower`` (language | vision | both) and the image options of ``hf-multimodal``.
Only ``dispatch=none`` or ``fixed:<expert>``: the first-pass strategies read text-only prompts.
lm-eval's multimodal path supports generation only (no log-likelihood with images).
"""

from __future__ import annotations

from lm_eval.models.hf_vlms import HFMultimodalLM

from t2bench.backends.adapt import (
    T2_ARGS,
    ExpertDispatchMixin,
    check_snapshot,
    launch_accelerator,
    merge_adapter,
    process_device,
    refuse_peft_with_experts,
)
from t2bench.backends.text import hflm_args
from t2bench.errors import ConfigError

#: share_context is the text backend's (its log-likelihood path); the VLM keeps HFLM's
VLM_ARGS = (T2_ARGS - {"share_context"}) | {"tower"}
VLM_DISPATCH = ("none", "fixed")


def valid_vlm_args() -> list[str]:
    return sorted(VLM_ARGS | hflm_args(HFMultimodalLM))


def check_images(requests) -> None:
    """Every image request carries decodable images; a clear error names the document if not."""
    from PIL import Image

    for r in requests:
        if len(r.args) < 3:
            continue
        where = f"document {getattr(r, 'doc_id', '?')} of task {getattr(r, 'task_name', '?')}"
        visuals = (r.args[2] or {}).get("visual")
        if not visuals:
            raise ConfigError(
                f"{where} has no image: the task's doc_to_image returned nothing. Check the "
                "dataset's image column (missing files are skipped by some loaders)"
            )
        for i, img in enumerate(visuals):
            if not isinstance(img, Image.Image):
                raise ConfigError(
                    f"{where}: image {i} is a {type(img).__name__}, not a decoded PIL image "
                    "(doc_to_image must return images; a path or None means the file was missing)"
                )
            try:
                img.load()
            except Exception as exc:
                raise ConfigError(
                    f"{where}: image {i} cannot be decoded ({exc}); the file is truncated or not "
                    "an image. Re-create or drop that item"
                ) from None


class T2VLM(ExpertDispatchMixin, HFMultimodalLM):
    """HFMultimodalLM with SVF experts / a merged peft adapter on an image-text model."""

    _lm_base = HFMultimodalLM

    def __init__(
        self,
        pretrained: str | None = None,
        experts=None,
        dispatch=None,
        modules: str | None = None,
        layers: str | None = None,
        tower: str = "language",
        transfer=False,
        peft: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        snapshot: str = "device",
        **kwargs,
    ) -> None:
        from t2bench.vlm.models import load_vlm, resolve_vlm

        unknown = sorted(set(kwargs) - hflm_args(HFMultimodalLM))
        if unknown:
            raise ConfigError(
                f"unknown model_args for t2-vlm: {', '.join(unknown)}. Valid: {', '.join(valid_vlm_args())}"
            )
        refuse_peft_with_experts(peft, experts)
        snapshot = check_snapshot(snapshot)
        accelerator = launch_accelerator()  # None unless launched with several processes
        model, _, model_id = load_vlm(
            pretrained,
            dtype="float32" if dtype == "auto" else dtype,
            device=process_device(accelerator, device),
        )
        if peft:
            model = merge_adapter(model, peft)
        super().__init__(pretrained=model, **kwargs)
        self.peft = peft or None
        self.model_id = model_id
        self._join_data_parallel(accelerator)  # before the set-up: its guard reads world_size
        self._setup_experts(
            experts,
            dispatch,
            modules,
            layers,
            transfer,
            tower=tower,
            dispatchers=VLM_DISPATCH,
            snapshot=snapshot,
            # the folder load_vlm read (resolved again only when snapshot=disk reads it back)
            source=resolve_vlm(pretrained)[1] if snapshot == "disk" else None,
        )

    def generate_until(self, requests, disable_tqdm: bool = False):
        check_images(requests)
        return self._dispatched(requests, super().generate_until, disable_tqdm=disable_tqdm)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        if requests and len(requests[0].args) >= 3:
            raise ConfigError(
                "t2-vlm: log-likelihood requests with images are not supported by lm-eval's "
                "multimodal path; use a generate_until task (e.g. t2vqa_text, textvqa)"
            )
        return self._dispatched(requests, super().loglikelihood, disable_tqdm=disable_tqdm)
