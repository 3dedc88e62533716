"""What bf16 compute does to an SVF expert's effect on the logits (a measurement, not a test).

    python -m t2bench.bench.bf16_effect [--expert PATH] [--prompts 8] [--task reasoning]

Loads the base model in fp32, applies the expert (default: the committed reasoning-svf-pg)
and computes the logits of a fixed batch of prompts (the first ``--prompts`` items of the
task's validation split, formatted as the trainer formats them) four ways: base and expert,
each in fp32 and in bf16. bf16 is the trainer's ``compute_dtype=bfloat16`` path: the model is
cast after the SVD, and W' = W + U diag(σ⊙(z−1)) Vᵀ is composed in fp32 from fp32 copies of W,
then cast once. Reports, over every real (non-padding) position:

* the expert's effect Δ = expert − base in each dtype: max and mean |Δ|, their Pearson
  correlation, and the fraction of positions whose argmax token the expert changes;
* bf16's own error on the base model (|bf16 − fp32| logits), the floor an effect competes with;
* the expert's |z − 1| and, per adapted matrix, the fraction of weights whose bf16 value the
  expert changes and how much of δ survives the cast (‖bf16(W') − bf16(W) − δ‖ / ‖δ‖).

Writes a JSON record with provenance (the weights' sha256, the expert file's sha256, the
items) under results/bench/.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from pathlib import Path

import torch

from t2bench.core.io import new_record, results_path
from t2bench.core.provenance import items_sha256, provenance, state_sha256
from t2bench.data.splits import load_splits
from t2bench.generation import encode_items, join_batch
from t2bench.svf import SVFPatcher, TargetSpec, check_fits, compose, decompose, load_expert
from t2bench.svf.expert import effective_z
from t2bench.train.policy import SVFPolicy

DEFAULT_EXPERT = str(results_path("experts/reasoning-svf-pg/reasoning-svf-pg.safetensors"))


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def effect_stats(base: torch.Tensor, adapted: torch.Tensor) -> dict:
    """Max / mean |adapted − base| and the fraction of rows whose argmax differs ((N, V) rows)."""
    delta = (adapted.float() - base.float()).abs()
    changed = adapted.float().argmax(-1) != base.float().argmax(-1)
    return {
        "max_abs_delta": float(delta.max()),
        "mean_abs_delta": float(delta.mean()),
        "argmax_changed_fraction": float(changed.float().mean()),
    }


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two tensors' entries (in float64)."""
    x, y = a.double().flatten(), b.double().flatten()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.norm() * y.norm()).clamp_min(1e-300))


def weight_survival(source: torch.Tensor, composed: torch.Tensor, dtype: torch.dtype) -> dict:
    """How much of δ = composed − source survives rounding both to ``dtype`` (one matrix)."""
    delta = composed - source
    kept = composed.to(dtype).float() - source.to(dtype).float()
    nonzero = delta != 0
    return {
        "changed_fraction": float((kept != 0)[nonzero].float().mean()) if nonzero.any() else 0.0,
        "relative_error": float((kept - delta).norm() / delta.norm().clamp_min(1e-30)),
    }


def _logits(model, ids: torch.Tensor, attn: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=attn, use_cache=False).logits[mask].float()


def measure(
    expert_path: str | Path = DEFAULT_EXPERT,
    *,
    model: str | None = None,
    task: str = "reasoning",
    prompts: int = 8,
    device: str | None = None,
) -> dict:
    from t2bench.models import load_model, resolve_device

    t_start = time.perf_counter()
    dev = resolve_device(device)
    lm = load_model(model, device=dev)
    weights = state_sha256(lm.model)
    expert = load_expert(expert_path)
    meta = expert.meta
    spec = TargetSpec(meta.module_set, ",".join(map(str, meta.layers)))
    d = decompose(lm.model, spec, model_id=lm.model_id, progress=False)
    check_fits(expert, d)
    zs = {k: z.to(dev) for k, z in effective_z(expert, d.sigmas()).items()}

    items = load_splits(task, seed=0).valid[:prompts]
    prompt_ids, _ = encode_items(lm.tokenizer, items)
    pad = lm.tokenizer.pad_token_id
    ids, attn, _ = join_batch(prompt_ids, [[] for _ in prompt_ids], pad, dev)
    mask = attn.bool()  # every real position of every prompt

    patcher = SVFPatcher(lm.model, d)
    base32 = _logits(lm.model, ids, attn, mask)
    with patcher.use(expert):
        exp32 = _logits(lm.model, ids, attn, mask)

    # the trainer's bf16 path: cast after the SVD, compose from fp32 copies, cast W' once
    policy = SVFPolicy(lm.model, d, compute_dtype=torch.bfloat16)
    base16 = _logits(lm.model, ids, attn, mask)
    policy.patcher.apply_z(zs, name=meta.name)
    exp16 = _logits(lm.model, ids, attn, mask)
    policy.patcher.restore()

    matrices = {}
    for k, z in zs.items():
        src = policy._source[k]
        matrices[k] = weight_survival(src, compose(src, d.svd[k], z), torch.bfloat16)
    dz = torch.cat([(z - 1).abs().flatten().cpu() for z in zs.values()])
    fp32, bf16 = effect_stats(base32, exp32), effect_stats(base16, exp16)
    last = attn.sum(1) - 1  # the position that predicts the first answer token
    rows = torch.cumsum(attn.flatten(), 0).view_as(attn) - 1  # row of each position in [mask]
    at_last = rows[torch.arange(len(prompt_ids), device=dev), last]
    agree = (exp16.argmax(-1) == exp32.argmax(-1)).float().mean()
    return {
        "model": lm.model_id,
        "expert": str(expert_path),
        "expert_name": meta.name,
        "task": task,
        "positions": int(mask.sum()),
        "prompt_tokens": [len(p) for p in prompt_ids],
        "expert_abs_z_minus_1": {
            "mean": float(dz.mean()),
            "median": float(dz.median()),
            "max": float(dz.max()),
            "p90": float(dz.quantile(0.9)),
        },
        "fp32": fp32,
        "bf16": bf16,
        "delta_correlation_fp32_vs_bf16": correlation(exp32 - base32, exp16 - base16),
        "bf16_over_fp32_mean_abs_delta": bf16["mean_abs_delta"]
        / max(fp32["mean_abs_delta"], 1e-30),
        "argmax_agreement_expert_bf16_vs_fp32": float(agree),
        "answer_position": {
            "fp32": effect_stats(base32[at_last], exp32[at_last]),
            "bf16": effect_stats(base16[at_last], exp16[at_last]),
        },
        "bf16_error_on_base": {
            "max_abs": float((base16 - base32).abs().max()),
            "mean_abs": float((base16 - base32).abs().mean()),
            "argmax_changed_fraction": float(
                (base16.argmax(-1) != base32.argmax(-1)).float().mean()
            ),
        },
        "weights_in_bf16": {
            "median_changed_fraction": statistics.median(
                m["changed_fraction"] for m in matrices.values()
            ),
            "min_changed_fraction": min(m["changed_fraction"] for m in matrices.values()),
            "median_relative_error": statistics.median(
                m["relative_error"] for m in matrices.values()
            ),
            "per_matrix": matrices,
        },
        "_provenance": {
            "weights_sha256": weights,
            "expert_sha256": _file_sha256(Path(expert_path)),
            "model_fingerprint": d.fingerprint,
            "items_sha256": items_sha256(it.uid for it in items),
            "data_split": f"{task} validation split, first {prompts} items",
            "seed": 0,
            "wall_s": time.perf_counter() - t_start,
        },
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--expert", default=DEFAULT_EXPERT)
    p.add_argument("--model", default=None, help="default: the packaged SmolLM2-135M-Instruct")
    p.add_argument("--task", default="reasoning")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=str(results_path("bench")))
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    r = measure(a.expert, model=a.model, task=a.task, prompts=a.prompts, device=a.device)

    r["provenance"] = provenance(model=r["model"], **r.pop("_provenance"))
    for dt in ("fp32", "bf16"):
        s = r[dt]
        print(
            f"{dt}: max |Δ| {s['max_abs_delta']:.4f}, mean |Δ| {s['mean_abs_delta']:.5f}, "
            f"argmax changed {s['argmax_changed_fraction']:.4f}"
        )
    print(
        f"corr(Δfp32, Δbf16) {r['delta_correlation_fp32_vs_bf16']:.4f}; bf16 error on base: "
        f"mean {r['bf16_error_on_base']['mean_abs']:.5f}; |z-1| mean "
        f"{r['expert_abs_z_minus_1']['mean']:.5f}; weights changed in bf16 (median matrix) "
        f"{r['weights_in_bf16']['median_changed_fraction']:.3f}"
    )
    if not a.no_write:
        print(f"written {new_record(Path(a.out), 'bf16-effect', r)}")


if __name__ == "__main__":
    main()
