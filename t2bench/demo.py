"""The main job until the lm-eval backend lands: load, decompose, apply an expert, generate.

The expert here is hand-made (it scales the top singular values of each adapted matrix) and
is labelled as such: it shows the mechanics, not a trained skill.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from t2bench.models import load_model
from t2bench.svf import (
    SVFPatcher,
    TargetSpec,
    decompose,
    identity_expert,
    load_expert,
    save_expert,
)

DEFAULT_PROMPT = "In two sentences, why is the sky blue?"


@dataclass
class DemoConfig:
    model: str | None = None
    modules: str = "mlp"
    prompt: str | None = None
    max_new_tokens: int = 48
    top_fraction: float = 0.1
    scale: float = 1.1
    device: str | None = None
    expert: str | None = None  # an expert file to apply instead of the hand-made one
    transfer: bool = False  # allow an expert made for another model of the same shapes


def top_sigma_expert(decomposition, top_fraction: float, scale: float):
    """z = ``scale`` on the largest ``top_fraction`` of each matrix's singular values, else 1."""
    e = identity_expert(
        decomposition,
        name=f"demo-top{int(top_fraction * 100)}-x{scale}",
        provenance={"kind": "hand-made demo expert, not trained"},
    )
    for z in e.params.values():
        z[: max(1, int(top_fraction * z.numel()))] = scale  # σ is sorted in descending order
    return e


def _generate(lm, prompt: str, max_new_tokens: int) -> str:
    tok = lm.tokenizer
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    else:
        text = prompt
    enc = tok(text, return_tensors="pt").to(lm.model.device)
    with torch.no_grad():
        out = lm.model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def _logits(lm, prompt: str) -> torch.Tensor:
    enc = lm.tokenizer(prompt, return_tensors="pt").to(lm.model.device)
    with torch.no_grad():
        return lm.model(**enc).logits.float()


def run_demo(cfg: DemoConfig) -> dict:
    prompt = cfg.prompt or DEFAULT_PROMPT
    t0 = time.perf_counter()
    lm = load_model(cfg.model, device=cfg.device)
    t_load = time.perf_counter() - t0
    print(
        f"model: {lm.model_id} ({type(lm.model).__name__}, fp32, {lm.model.device}) loaded in {t_load:.1f} s"
    )

    user_expert = load_expert(cfg.expert, device=lm.model.device) if cfg.expert else None
    spec = TargetSpec(cfg.modules)
    if user_expert is not None:  # decompose exactly what the expert adapts
        spec = TargetSpec(user_expert.meta.module_set, ",".join(map(str, user_expert.meta.layers)))
    t0 = time.perf_counter()
    d = decompose(lm.model, spec, model_id=lm.model_id)
    cached = int(d.stats["cache_hits"])
    print(
        f"SVD of {len(d.targets)} {cfg.modules} matrices: {time.perf_counter() - t0:.1f} s "
        f"({cached} from cache), {d.num_parameters():,} SVF parameters, fingerprint {d.fingerprint}"
    )

    patcher = SVFPatcher(lm.model, d)
    base_logits = _logits(lm, prompt)
    patcher.apply(identity_expert(d))
    max_diff = (_logits(lm, prompt) - base_logits).abs().max().item()
    print(f"identity expert: max |logits - base| = {max_diff:.2e}")

    if user_expert is not None:
        expert = user_expert
        print(
            f"expert {expert.meta.name!r} from {cfg.expert}: {expert.num_parameters():,} parameters, "
            f"made for {expert.meta.base_model!r}"
        )
    else:
        expert = top_sigma_expert(d, cfg.top_fraction, cfg.scale)
        with tempfile.TemporaryDirectory() as tmp:
            path = save_expert(expert, Path(tmp) / expert.meta.name)
            size = path.stat().st_size
            expert = load_expert(path, device=lm.model.device)
        print(
            f"expert {expert.meta.name!r} (hand-made, not trained): {expert.num_parameters():,} parameters, "
            f"{size / 1024:.0f} KiB on disk, saved and reloaded"
        )

    patcher.restore()
    print(f"\nprompt: {prompt}")
    t0 = time.perf_counter()
    base_text = _generate(lm, prompt, cfg.max_new_tokens)
    print(f"\n[base]    {base_text}")
    t0c = time.perf_counter()
    patcher.apply(expert)
    t_compose = time.perf_counter() - t0c
    adapted_text = _generate(lm, prompt, cfg.max_new_tokens)
    print(f"\n[adapted] {adapted_text}")
    patcher.restore()
    t_gen = time.perf_counter() - t0 - t_compose
    exact = patcher.is_base()
    print(
        f"\ncompose {len(d.targets)} matrices: {t_compose:.2f} s; two generations: {t_gen:.1f} s; "
        f"base weights restored bit-exactly: {'yes' if exact else 'NO'}"
    )
    return {
        "identity_max_diff": max_diff,
        "restored_exactly": exact,
        "base": base_text,
        "adapted": adapted_text,
    }
