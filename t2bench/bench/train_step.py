"""Training-step cost per adapter and compute dtype on one fixed batch, plus a full RL step.

    python -m t2bench.bench.train_step [--model NAME] [--batch 8] [--seq 256] [--repeats 3]
        [--variants svf,lora,ia3,svf-lp] [--dtypes float32,bfloat16] [--mode ntp|rl|both]

Each job (variant × dtype, plus the baseline: SVF in fp32 with full-vocabulary logits at every
position, the step as the trainer ran it before selected-position logits) runs in its own fresh
subprocess (peft changes the model in place, and peak memory must be per job), in an
interleaved order over ``--rounds``. Every job builds its policy as the trainer does
(``build_policy`` with ``compute_dtype``), so bf16 jobs keep adapters and optimizer state fp32.

``ntp``: forward + backward + AdamW step + zero_grad on a fixed batch of seeded random token
ids with a next-token loss over the last half of each sequence. ``rl``: one policy-gradient
step as the trainer does it for ``--rl-prompts`` prompts of the reasoning task's train split:
seeded sampled generation of up to ``--rl-new-tokens`` tokens with the adapter applied,
rewards, whitened advantages, the log-prob forward/backward, the KL reference forward
(``--rl-kl``), clipping and the AdamW step; the adapter is reset after each timed step so
every repeat samples from the same policy. Phases (generation, log-prob forward/backward with
the reference, optimizer) are timed apart.

Memory: on CUDA the peak allocated bytes over the timed steps; on CPU the resident set size
after building the policy and the peak resident set size during the steps (the kernel's
high-water mark, reset just before the first step where Linux allows it).
Writes a new JSON record with provenance under results/bench/ and prints samples/s per job,
each job's samples/s over the baseline's, and SVF/LoRA step time per dtype.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from t2bench.core.io import new_record, results_path
from t2bench.core.provenance import items_sha256, provenance, state_sha256
from t2bench.data.splits import load_jsonl_items, load_splits
from t2bench.generation import completion_logprobs, logit_positions
from t2bench.train import rewards as rw
from t2bench.train.advantages import advantages
from t2bench.train.config import TrainConfig
from t2bench.train.policy import GroupedBatch, build_policy

VARIANTS = ("svf", "lora", "ia3", "svf-lp")
#: benchmark variants that are a method with other TrainConfig fields: svf-lp is SVF with its
#: change to W formed in the compute dtype (``svf_delta_dtype="compute"``)
VARIANT_FIELDS = {"svf-lp": ("svf", {"svf_delta_dtype": "compute"})}
DTYPES = ("float32", "bfloat16")
#: where the LM head runs: on the positions whose log-probs are needed, or on every position
LOGITS = ("selected", "full")
MODES = ("ntp", "rl")
#: the step as the trainer ran it before this benchmark's options: SVF, fp32, full logits
BASELINE = ("svf", "float32", "full")
RESULT_PREFIX = "T2BENCH_TRAIN_STEP "


def _status_kib(key: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ≥ 4.0); False where it is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_kib() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r  # bytes on macOS, KiB on Linux


def make_batch(vocab: int, batch: int, seq: int, seed: int, device) -> tuple[torch.Tensor, ...]:
    """Seeded random ids, an all-ones attention mask, and a target mask over the last half."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    attn = torch.ones_like(ids)
    target = torch.zeros_like(ids)
    target[:, seq // 2 :] = 1
    return ids.to(device), attn.to(device), target.to(device)


def _optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values()
        for v in s.values()
        if torch.is_tensor(v)
    )


def label(variant: str, dtype: str = "float32", logits: str = "selected") -> str:
    """A job's name in the record: ``svf/bfloat16``, ``svf/float32/full-logits``."""
    return f"{variant}/{dtype}" + ("/full-logits" if logits == "full" else "")


def _build(variant: str, dtype: str, objective: str, model, device, seed: int, **cfg_kw):
    """Model, config and policy as the trainer builds them, and AdamW over the adapter."""
    from t2bench.models import load_model, resolve_device

    dev = resolve_device(device)
    torch.manual_seed(seed)
    lm = load_model(model, device=dev)
    weights = state_sha256(lm.model)  # the loaded weights, before any adapter or cast
    method, fields = VARIANT_FIELDS.get(variant, (variant, {}))
    cfg = TrainConfig(
        method=method,
        objective=objective,
        modules="mlp",
        progress=False,
        seed=seed,
        compute_dtype=dtype,
        **fields,
        **cfg_kw,
    )
    policy = build_policy(cfg, lm.model, lm.model_id, dev)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return dev, lm, weights, cfg, policy, params, optimizer


def _measure(
    step: Callable[[], dict],
    dev: torch.device,
    *,
    warmup: int,
    repeats: int,
    after: Callable[[], None] | None = None,
) -> tuple[list[float], list[dict], dict]:
    """Warm-up and timed runs of ``step`` (``after`` runs untimed after each), and memory."""
    cuda = dev.type == "cuda"
    memory: dict = {"device": dev.type}
    if cuda:
        torch.cuda.synchronize(dev)
        memory["allocated_after_build_bytes"] = torch.cuda.memory_allocated(dev)
    else:
        memory["rss_after_build_kib"] = _status_kib("VmRSS")
        memory["peak_rss_before_steps_kib"] = _maxrss_kib()  # loading, SVD, policy build

    def timed() -> dict:
        if cuda:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        out = step()  # its float() of the loss waits for the device
        if cuda:
            torch.cuda.synchronize(dev)
        out["seconds"] = time.perf_counter() - t0
        if after is not None:
            after()
        return out

    if not cuda:
        memory["peak_rss_reset_before_steps"] = _reset_peak_rss()
    warm = [timed()["seconds"] for _ in range(warmup)]
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    runs = [timed() for _ in range(repeats)]
    if cuda:
        memory["peak_allocated_steps_bytes"] = torch.cuda.max_memory_allocated(dev)
        memory["step_overhead_bytes"] = (
            memory["peak_allocated_steps_bytes"] - memory["allocated_after_build_bytes"]
        )
    else:
        peak = _maxrss_kib()
        reset = memory["peak_rss_reset_before_steps"]
        # with the mark reset, ru_maxrss is the peak over the steps; otherwise the process peak
        memory["peak_rss_kib"] = max(peak, memory["peak_rss_before_steps_kib"])
        memory["peak_rss_steps_kib"] = peak if reset else None
        memory["step_overhead_kib"] = (peak if reset else memory["peak_rss_kib"]) - (
            memory["rss_after_build_kib"] or 0
        )
    return warm, runs, memory


#: environment variables that change how the CPU kernels share the cores
_THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def _environment() -> dict:
    """Threads and machine load: on a shared CPU, other processes' load changes every time."""
    import os

    env = {k: os.environ[k] for k in _THREAD_ENV if k in os.environ}
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"thread_env": env, "load_average_1_5_15": load}


def _record(variant, dtype, logits, mode, samples, lm, weights, policy, params, optimizer):
    out = {
        "mode": mode,
        "variant": variant,
        "dtype": dtype,
        "logits": logits,
        "label": label(variant, dtype, logits),
        "samples_per_step": samples,
        "model": lm.model_id,
        "weights_sha256": weights,
        "trainable_parameters": sum(p.numel() for p in params),
        "trainable_dtypes": sorted({str(p.dtype) for p in params}),
        "frozen_dtypes": sorted({str(p.dtype) for p in policy.parameters() if not p.requires_grad}),
        "trainable_tensors": len(params),
        "optimizer_state_bytes": _optimizer_state_bytes(optimizer),
        "torch_threads": torch.get_num_threads(),
        "environment_at_end": _environment(),
    }
    if variant.startswith("svf"):
        out["model_fingerprint"] = policy.decomposition.fingerprint
        out["svf_delta_dtypes"] = [str(policy.delta_dtype)]  # as the policy forms its change
    return out


def _check_job(variant: str, dtype: str, logits: str) -> None:
    if variant not in VARIANTS or dtype not in DTYPES or logits not in LOGITS:
        raise ValueError(
            f"unknown job {variant}/{dtype}/{logits}: variants {VARIANTS}, dtypes {DTYPES}, "
            f"logits {LOGITS}"
        )


def worker(
    variant: str,
    *,
    dtype: str = "float32",
    logits: str = "selected",
    model: str | None = None,
    device: str | None = None,
    batch: int = 8,
    seq: int = 256,
    warmup: int = 1,
    repeats: int = 3,
    seed: int = 0,
) -> dict:
    """Time ``repeats`` next-token training steps after ``warmup`` untimed ones (in-process)."""

    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    _check_job(variant, dtype, logits)
    t_start = time.perf_counter()
    dev, lm, weights, cfg, policy, params, optimizer = _build(
        variant, dtype, "ntp", model, device, seed
    )
    ids, attn, target = make_batch(lm.model.config.vocab_size, batch, seq, seed, dev)
    sel = logit_positions(target) if logits == "selected" else None
    before = [p.detach().clone() for p in params]
    build_s = time.perf_counter() - t_start

    def step() -> dict:
        out = policy(ids, attn, select=sel)
        tok_lp, _, _ = completion_logprobs(out, ids, target)
        loss = -tok_lp.mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach())}

    warm, runs, memory = _measure(step, dev, warmup=warmup, repeats=repeats)
    times = [r["seconds"] for r in runs]
    with torch.no_grad():
        max_update = max(float((p - b).abs().max()) for p, b in zip(params, before, strict=True))
    out = _record(variant, dtype, logits, "ntp", batch, lm, weights, policy, params, optimizer)
    return out | {
        "device": str(dev),
        "batch": batch,
        "seq": seq,
        "warmup": warmup,
        "repeats": repeats,
        "seed": seed,
        "data": "seeded random token ids, attention mask all ones",
        "build_seconds": build_s,
        "warmup_seconds": warm,
        "step_seconds": times,
        "median_step_seconds": statistics.median(times),
        "losses": [r["loss"] for r in runs],
        "max_abs_update": max_update,
        "memory": memory,
        "wall_s": time.perf_counter() - t_start,
    }


def rl_items(task: str, prompts: int, data: str | None = None):
    """The first ``prompts`` items of ``task``'s train split (or of a JSONL file)."""

    items = load_jsonl_items(data, task) if data else load_splits(task, seed=0).train
    if len(items) < prompts:
        raise ValueError(f"{len(items)} {task} items, {prompts} prompts asked for")
    return items[:prompts]


def rl_worker(
    variant: str,
    *,
    dtype: str = "float32",
    logits: str = "selected",
    model: str | None = None,
    device: str | None = None,
    prompts: int = 8,
    new_tokens: int = 16,
    kl_coef: float = 0.1,
    task: str = "reasoning",
    data: str | None = None,
    warmup: int = 1,
    repeats: int = 3,
    seed: int = 0,
    group: int = 1,
) -> dict:
    """Time policy-gradient steps as the trainer runs them, on one micro-batch of ``prompts``
    × ``group`` samples.

    Sampled generation (seeded per sample, the adapter applied), rewards, whitened
    advantages (``group`` > 1: whitened within each prompt's group), -A·log π + λ·KL forward
    and backward, grad clipping, AdamW. With ``group`` > 1 and selected logits each prompt is
    encoded once per group, as the trainer does; the ``full`` logits job (the baseline) runs
    the joined batch as the trainer did before. The adapter is put back after every step, so
    each repeat samples from the same policy.
    """
    from t2bench.generation import (
        completion_logprobs,
        encode_items,
        generate,
        join_batch,
        logit_positions,
        per_sequence,
        sample_seed,
        token_kl,
    )

    if repeats < 1 or warmup < 0 or prompts < 1 or new_tokens < 1 or group < 1:
        raise ValueError("repeats, prompts, group and new_tokens must be >= 1 and warmup >= 0")
    _check_job(variant, dtype, logits)
    t_start = time.perf_counter()
    dev, lm, weights, cfg, policy, params, optimizer = _build(
        variant, dtype, "pg", model, device, seed, kl_coef=kl_coef, advantage="whiten"
    )
    tok = lm.tokenizer
    unique = rl_items(task, prompts, data)
    items = [it for it in unique for _ in range(group)]  # each prompt's group is consecutive
    prompt_ids, _ = encode_items(tok, items)
    samples = len(items)
    seeds = [sample_seed(seed, 0, i) for i in range(samples)]
    share = group > 1 and logits == "selected"
    mode = "group_whiten" if group > 1 else "whiten"
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    spec = rw.RewardSpec(cfg.reward_correct, cfg.reward_wrong)
    start = policy.trainable_state()
    cuda = dev.type == "cuda"
    build_s = time.perf_counter() - t_start

    def now() -> float:
        if cuda:
            torch.cuda.synchronize(dev)
        return time.perf_counter()

    def step() -> dict:
        t0 = now()
        with policy.generating() as gen_model:
            roll = generate(
                gen_model,
                tok,
                prompt_ids,
                max_new_tokens=new_tokens,
                seeds=seeds,
                temperature=1.0,
                group_size=group if share else 1,
            )
        t1 = now()
        r, _ = rw.score(task, roll.texts, items, spec)
        adv = advantages(torch.tensor(r, dtype=torch.float32, device=dev), mode, group)
        ids, attn, target = join_batch(prompt_ids, roll.completion_ids, pad, dev)
        sel = logit_positions(target) if logits == "selected" else None
        groups = (
            GroupedBatch(prompt_ids[::group], roll.completion_ids, group, pad) if share else None
        )
        out = policy(ids, attn, select=sel, groups=groups)
        tok_lp, logp, rows = completion_logprobs(out, ids, target)
        per_sample = -adv * per_sequence(tok_lp, rows, samples, cfg.logprob_reduction)
        if kl_coef > 0:
            ref = policy.reference_logits(ids, attn, select=sel, groups=groups)
            _, ref_logp, _ = completion_logprobs(ref, ids, target)
            kl = per_sequence(token_kl(logp, ref_logp, cfg.kl_direction), rows, samples, "mean")
            per_sample = per_sample + kl_coef * kl
        loss = per_sample.sum() / samples
        loss.backward()
        t2 = now()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3 = now()
        return {
            "loss": float(loss.detach()),
            "generate_s": t1 - t0,
            "logprob_s": t2 - t1,
            "optimizer_s": t3 - t2,
            "generated_tokens": sum(len(c) for c in roll.completion_ids),
            "sequence_tokens": int(attn.sum()),
        }

    warm, runs, memory = _measure(
        step,
        dev,
        warmup=warmup,
        repeats=repeats,
        after=lambda: policy.load_trainable_state(start),
    )
    times = [r["seconds"] for r in runs]
    out = _record(variant, dtype, logits, "rl", samples, lm, weights, policy, params, optimizer)
    return out | {
        "device": str(dev),
        "prompts": prompts,
        "group": group,
        "shared_prompts": share,
        "new_tokens": new_tokens,
        "kl_coef": kl_coef,
        "task": task,
        "data": data or f"{task} train split, first {prompts} items",
        "items_sha256": items_sha256(it.uid for it in unique),
        "prompt_tokens": [len(p) for p in prompt_ids],
        "warmup": warmup,
        "repeats": repeats,
        "seed": seed,
        "build_seconds": build_s,
        "warmup_seconds": warm,
        "step_seconds": times,
        "median_step_seconds": statistics.median(times),
        "phases": {
            k: [r[k] for r in runs]
            for k in (
                "generate_s",
                "logprob_s",
                "optimizer_s",
                "generated_tokens",
                "sequence_tokens",
            )
        },
        "losses": [r["loss"] for r in runs],
        "memory": memory,
        "wall_s": time.perf_counter() - t_start,
    }


def schedule(jobs: list, rounds: int) -> list:
    """Interleaved run order: every round runs each job once, starting one later each round."""
    n = len(jobs)
    return [jobs[(r + i) % n] for r in range(rounds) for i in range(n)]


_MEMORY_KEYS = (
    "peak_allocated_steps_bytes",
    "step_overhead_bytes",
    "rss_after_build_kib",
    "peak_rss_kib",
    "peak_rss_steps_kib",
    "step_overhead_kib",
)


def summarize(results: list[dict], baseline: str | None = None) -> dict:
    """Per-job medians over all rounds, samples/s, peak memory, and the ratios.

    ``samples_per_s_over_baseline``: each job's samples/s over ``baseline``'s (a label; by
    default the fp32 full-logits SVF job if present, else fp32 SVF). ``svf_over_lora``: SVF's
    median step time over LoRA's, per dtype, among jobs with selected-position logits.
    """
    by: dict[str, list[dict]] = {}
    for r in results:
        key = label(r["variant"], r.get("dtype", "float32"), r.get("logits", "selected"))
        by.setdefault(key, []).append(r)
    rows = {}
    for key, rs in by.items():
        times = [t for r in rs for t in r["step_seconds"]]
        median = statistics.median(times)
        samples = rs[0].get("samples_per_step", rs[0].get("batch"))
        row = {
            "variant": rs[0]["variant"],
            "dtype": rs[0].get("dtype", "float32"),
            "logits": rs[0].get("logits", "selected"),
            "median_step_seconds": median,
            "samples_per_step": samples,
            "samples_per_s": samples / median if samples else None,
            "step_seconds": times,
            "trainable_parameters": rs[0]["trainable_parameters"],
            "optimizer_state_bytes": rs[0]["optimizer_state_bytes"],
            "rounds": len(rs),
        }
        phases = [r["phases"] for r in rs if "phases" in r]
        if phases:
            row["phase_medians"] = {
                k: statistics.median([v for p in phases for v in p[k]]) for k in phases[0]
            }
        for mkey in _MEMORY_KEYS:
            vals = [r["memory"][mkey] for r in rs if r["memory"].get(mkey) is not None]
            if vals:
                row[mkey] = max(vals)
        rows[key] = row
    summary: dict = {"variants": rows}
    if baseline is None:
        baseline = next((k for k in (label(*BASELINE), label("svf")) if k in rows), None)
    if baseline in rows and rows[baseline]["samples_per_s"]:
        base = rows[baseline]["samples_per_s"]
        summary["baseline"] = baseline
        summary["samples_per_s_over_baseline"] = {
            k: r["samples_per_s"] / base for k, r in rows.items() if r["samples_per_s"]
        }
    by_dtype = {}
    for dt in DTYPES:
        svf, lora = rows.get(label("svf", dt)), rows.get(label("lora", dt))
        if svf and lora:
            by_dtype[dt] = svf["median_step_seconds"] / lora["median_step_seconds"]
        lp = rows.get(label("svf-lp", dt))
        if lp and lora and dt != "float32":  # in fp32 svf-lp is svf
            by_dtype[f"{dt}, svf-lp"] = lp["median_step_seconds"] / lora["median_step_seconds"]
    if by_dtype:
        summary["svf_over_lora_step_time"] = by_dtype
        summary["goal_svf_over_lora_le_1"] = {dt: r <= 1.0 for dt, r in by_dtype.items()}
    return summary


def _worker_args(a: argparse.Namespace, mode: str) -> list[str]:
    args = ["--warmup", str(a.warmup), "--repeats", str(a.repeats), "--seed", str(a.seed)]
    if mode == "ntp":
        args += ["--batch", str(a.batch), "--seq", str(a.seq)]
    else:
        args += ["--rl-prompts", str(a.rl_prompts), "--rl-new-tokens", str(a.rl_new_tokens)]
        args += ["--rl-kl", str(a.rl_kl), "--rl-task", a.rl_task, "--rl-group", str(a.rl_group)]
        if a.rl_data:
            args += ["--rl-data", a.rl_data]
    if a.model is not None:
        args += ["--model", a.model]
    if a.device is not None:
        args += ["--device", a.device]
    return args


def _run_subprocess(job: tuple[str, str, str, str], args: list[str]) -> dict:
    mode, variant, dtype, logits = job
    cmd = [sys.executable, "-m", "t2bench.bench.train_step", "--worker", variant]
    cmd += ["--mode", mode, "--dtypes", dtype, "--logits", logits, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode or not lines:
        raise RuntimeError(
            f"worker {'/'.join(job)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def _format_table(summary: dict) -> str:
    cpu = any("peak_rss_kib" in r for r in summary["variants"].values())
    head = f"{'job':26} {'median s':>9} {'samples/s':>10} {'/base':>6} {'trainable':>10}"
    head += f" {'peak steps MiB':>15}" if cpu else f" {'peak alloc MiB':>15}"
    lines = [head]
    ratios = summary.get("samples_per_s_over_baseline", {})
    for k, r in summary["variants"].items():
        ratio = f"{ratios[k]:6.2f}" if k in ratios else f"{'-':>6}"
        sps = f"{r['samples_per_s']:10.3f}" if r.get("samples_per_s") else f"{'-':>10}"
        line = (
            f"{k:26} {r['median_step_seconds']:9.3f} {sps} {ratio} {r['trainable_parameters']:10d}"
        )
        if cpu:
            peak = r.get("peak_rss_steps_kib", r.get("peak_rss_kib"))
            line += f" {peak / 1024 if peak is not None else float('nan'):15.1f}"
        else:
            peak = r.get("peak_allocated_steps_bytes")
            line += f" {peak / 2**20 if peak is not None else float('nan'):15.1f}"
        if "phase_medians" in r:
            ph = r["phase_medians"]
            line += (
                f"  gen {ph['generate_s']:.2f}s logprob {ph['logprob_s']:.2f}s "
                f"opt {ph['optimizer_s']:.3f}s ({ph['generated_tokens']:.0f} new tokens)"
            )
        lines.append(line)
    for dt, ratio in summary.get("svf_over_lora_step_time", {}).items():
        lines.append(f"svf/lora step time, {dt}: {ratio:.3f} (goal <= 1.0)")
    return "\n".join(lines)


def jobs(variants: list[str], dtypes: list[str], modes: list[str], baseline: bool) -> list:
    """(mode, variant, dtype, logits) of every job, the baseline first in each mode."""
    out = []
    for mode in modes:
        if baseline:
            out.append((mode, *BASELINE))
        out += [(mode, v, dt, "selected") for dt in dtypes for v in variants]
    return out


def _split(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    vals = [v.strip() for v in text.split(",") if v.strip()]
    unknown = sorted(set(vals) - set(allowed))
    if unknown or not vals:
        raise SystemExit(f"unknown {what} {unknown or text!r}: use {', '.join(allowed)}")
    return vals


def run(a: argparse.Namespace) -> dict:

    t_start = time.perf_counter()
    env_start = _environment()
    variants = _split(a.variants, VARIANTS, "variant(s)")
    dtypes = _split(a.dtypes, DTYPES, "dtype(s)")
    modes = list(MODES) if a.mode == "both" else [a.mode]
    order = schedule(jobs(variants, dtypes, modes, a.baseline), a.rounds)
    results = []
    failed = []
    for job in order:
        print(f"running {'/'.join(job)} ...", flush=True)
        try:
            r = _run_subprocess(job, _worker_args(a, job[0]))
        except RuntimeError as exc:
            # one job killed or crashed (a shared machine) costs that job, not the whole run:
            # the record lists it, and the ratios use the jobs that finished
            print(exc, file=sys.stderr, flush=True)
            failed.append({"job": "/".join(job), "error": str(exc)[-2000:]})
            continue
        print(f"  {r['label']}: median {r['median_step_seconds']:.2f} s", flush=True)
        results.append(r)
    if not results:
        raise RuntimeError(f"every job failed: {failed}")
    first = results[0]
    fingerprint = next((r["model_fingerprint"] for r in results if "model_fingerprint" in r), None)
    record = {
        "model": first["model"],
        "device": first["device"],
        "order": ["/".join(j) for j in order],
        "optimizer": "AdamW lr 2e-3, weight decay 0 (TrainConfig defaults)",
        "adapters": {
            "svf": "one vector per mlp matrix (gate, up, down), z parameterisation",
            "svf-lp": "svf with its change U diag(sigma*(z-1)) V^T formed in the compute dtype "
            "(bf16 copies of U, V^T), added to the fp32 weight before its cast",
            "lora": "r16, alpha 32, dropout 0.05 on q_proj, v_proj",
            "ia3": "k_proj, v_proj, down_proj",
        },
        "dtypes": "compute_dtype of the frozen model; adapters and optimizer state stay fp32",
        "logits": "selected: LM head on the positions whose log-probs are needed; "
        "full-logits: on every position (the step before this option)",
    }
    if any(r["mode"] == "ntp" for r in results):
        record["ntp"] = {
            "batch_shape": [a.batch, a.seq],
            "loss": "next-token prediction over the last half of each sequence (mean token NLL)",
            **summarize([r for r in results if r["mode"] == "ntp"]),
        }
    rl = [r for r in results if r["mode"] == "rl"]
    if rl:
        summary = summarize(rl)
        over = summary.get("samples_per_s_over_baseline", {})
        record["rl"] = {
            "step": f"{a.rl_prompts} prompts x {a.rl_group} samples x up to "
            f"{a.rl_new_tokens} sampled tokens, "
            + ("group-whitened" if a.rl_group > 1 else "whitened")
            + f" advantages, KL coef {a.rl_kl}, grad clip 1e-3, one micro-batch; selected-"
            "logits jobs encode each prompt once per group, the full-logits baseline runs the "
            "joined batch",
            "task": a.rl_task,
            "items_sha256": rl[0]["items_sha256"],
            "prompt_tokens": rl[0]["prompt_tokens"],
            **summary,
            "goal_svf_samples_per_s_ge_3x_baseline": {
                k: v >= 3.0 for k, v in over.items() if k.startswith(("svf/", "svf-lp/"))
            },
        }
    record |= {
        "failed_jobs": failed,
        "workers": results,
        "provenance": provenance(
            model=first["model"],
            model_fingerprint=fingerprint,
            weights_sha256=first["weights_sha256"],
            seed=a.seed,
            data_split=f"ntp: seeded random ids; rl: {a.rl_task} train split"
            if "rl" in modes
            else "ntp: seeded random ids",
            warmup=a.warmup,
            repeats=a.repeats,
            rounds=a.rounds,
            wall_s=time.perf_counter() - t_start,
            environment_at_start=env_start,
            environment_at_end=_environment(),
        ),
    }
    return record


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=None, help="default: the packaged SmolLM2-135M-Instruct")
    p.add_argument("--device", default=None, help="default: auto (cuda, mps, cpu)")
    p.add_argument("--mode", default="ntp", choices=(*MODES, "both"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--rl-prompts", type=int, default=8)
    p.add_argument("--rl-new-tokens", type=int, default=16)
    p.add_argument("--rl-kl", type=float, default=0.1, help="KL coef; 0 skips the reference")
    p.add_argument("--rl-task", default="reasoning")
    p.add_argument("--rl-group", type=int, default=1, help="samples per prompt (K)")
    p.add_argument("--rl-data", default=None, help="JSONL items instead of the packaged split")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all jobs")
    p.add_argument("--variants", default="svf,lora,ia3")
    p.add_argument("--dtypes", default="float32", help="comma-separated: float32,bfloat16")
    p.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run SVF fp32 with full logits (the step before selected logits)",
    )
    p.add_argument("--logits", default="selected", choices=LOGITS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(results_path("bench")), help="folder for the JSON record")
    p.add_argument("--no-write", action="store_true", help="print only, write no record")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    if a.worker:
        common = dict(
            dtype=a.dtypes,
            logits=a.logits,
            model=a.model,
            device=a.device,
            warmup=a.warmup,
            repeats=a.repeats,
            seed=a.seed,
        )
        if a.mode == "rl":
            r = rl_worker(
                a.worker,
                prompts=a.rl_prompts,
                new_tokens=a.rl_new_tokens,
                kl_coef=a.rl_kl,
                task=a.rl_task,
                data=a.rl_data,
                group=a.rl_group,
                **common,
            )
        else:
            r = worker(a.worker, batch=a.batch, seq=a.seq, **common)
        print(RESULT_PREFIX + json.dumps(r), flush=True)
        return
    r = run(a)
    print(f"model {r['model']} on {r['device']}, order {r['order']}")
    for mode in MODES:
        if mode in r:
            print(f"-- {mode}")
            print(_format_table(r[mode]))
    if a.no_write:
        return

    print(f"written {new_record(Path(a.out), 'train-step', r)}")


if __name__ == "__main__":
    main()
