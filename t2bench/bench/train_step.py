"""One training step of an SVF expert against a LoRA r16 (q_proj, v_proj) adapter, same batch.

    python -m t2bench.bench.train_step [--model NAME] [--batch 8] [--seq 256] [--repeats 3]

Each variant (svf, lora, and ia3 unless ``--variants`` says otherwise) runs in its own fresh
subprocess (peft changes the model in place, and peak memory must be per variant), in an
interleaved order over ``--rounds``. A step is forward + backward + AdamW step + zero_grad on a
fixed batch of seeded random token ids with a next-token loss over the last half of each
sequence. Memory: on CUDA the peak allocated bytes over the timed steps; on CPU the resident set
size after building the policy and the peak resident set size during the steps (the kernel's
high-water mark, reset just before the first step where Linux allows it).
Writes a new JSON record with provenance under results/bench/ and prints the SVF/LoRA ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

VARIANTS = ("svf", "lora", "ia3")
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


def worker(
    variant: str,
    *,
    model: str | None = None,
    device: str | None = None,
    batch: int = 8,
    seq: int = 256,
    warmup: int = 1,
    repeats: int = 3,
    seed: int = 0,
) -> dict:
    """Time ``repeats`` training steps of ``variant`` after ``warmup`` untimed ones (in-process)."""
    from t2bench.models import load_model, resolve_device
    from t2bench.train.config import TrainConfig
    from t2bench.train.policy import build_policy
    from t2bench.train.rollout import completion_logprobs

    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    t_start = time.perf_counter()
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    torch.manual_seed(seed)
    lm = load_model(model, device=dev)
    cfg = TrainConfig(method=variant, objective="ntp", modules="mlp", progress=False, seed=seed)
    policy = build_policy(cfg, lm.model, lm.model_id, dev)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ids, attn, target = make_batch(lm.model.config.vocab_size, batch, seq, seed, dev)
    before = [p.detach().clone() for p in params]
    build_s = time.perf_counter() - t_start

    memory: dict = {"device": dev.type}
    if cuda:
        torch.cuda.synchronize(dev)
        memory["allocated_after_build_bytes"] = torch.cuda.memory_allocated(dev)
    else:
        memory["rss_after_build_kib"] = _status_kib("VmRSS")
        memory["peak_rss_before_steps_kib"] = _maxrss_kib()  # loading, SVD, policy build

    def step() -> float:
        logits = policy(ids, attn)
        tok_lp, _, _ = completion_logprobs(logits, ids, target)
        loss = -tok_lp.mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def timed() -> tuple[float, float]:
        if cuda:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        loss = step()  # float() waits for the device
        if cuda:
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0, loss

    if not cuda:
        memory["peak_rss_reset_before_steps"] = _reset_peak_rss()
    warm = [timed()[0] for _ in range(warmup)]
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    runs = [timed() for _ in range(repeats)]
    times = [t for t, _ in runs]
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

    with torch.no_grad():
        max_update = max(float((p - b).abs().max()) for p, b in zip(params, before, strict=True))
    out = {
        "variant": variant,
        "model": lm.model_id,
        "device": str(dev),
        "batch": batch,
        "seq": seq,
        "warmup": warmup,
        "repeats": repeats,
        "seed": seed,
        "trainable_parameters": sum(p.numel() for p in params),
        "trainable_tensors": len(params),
        "optimizer_state_bytes": _optimizer_state_bytes(optimizer),
        "build_seconds": build_s,
        "warmup_seconds": warm,
        "step_seconds": times,
        "median_step_seconds": statistics.median(times),
        "losses": [loss for _, loss in runs],
        "max_abs_update": max_update,
        "memory": memory,
        "torch_threads": torch.get_num_threads(),
        "wall_s": time.perf_counter() - t_start,
    }
    if variant == "svf":
        out["model_fingerprint"] = policy.decomposition.fingerprint
    return out


def schedule(variants: list[str], rounds: int) -> list[str]:
    """Interleaved run order: every round runs each variant once, starting one later each round."""
    n = len(variants)
    return [variants[(r + i) % n] for r in range(rounds) for i in range(n)]


def summarize(results: list[dict], baseline: str = "lora") -> dict:
    """Per-variant medians over all rounds, peak memory, and each variant's time ratio to LoRA."""
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["variant"], []).append(r)
    rows = {}
    for v, rs in by.items():
        times = [t for r in rs for t in r["step_seconds"]]
        mem = [r["memory"] for r in rs]
        row = {
            "median_step_seconds": statistics.median(times),
            "step_seconds": times,
            "trainable_parameters": rs[0]["trainable_parameters"],
            "optimizer_state_bytes": rs[0]["optimizer_state_bytes"],
            "rounds": len(rs),
        }
        for key in (
            "peak_allocated_steps_bytes",
            "step_overhead_bytes",
            "rss_after_build_kib",
            "peak_rss_kib",
            "peak_rss_steps_kib",
            "step_overhead_kib",
        ):
            vals = [m[key] for m in mem if m.get(key) is not None]
            if vals:
                row[key] = max(vals)
        rows[v] = row
    summary: dict = {"variants": rows}
    if baseline in rows:
        base = rows[baseline]["median_step_seconds"]
        summary["step_time_over_" + baseline] = {
            v: r["median_step_seconds"] / base for v, r in rows.items()
        }
        if "svf" in rows:
            summary["svf_over_lora_step_time"] = rows["svf"]["median_step_seconds"] / base
            summary["goal_svf_over_lora_le_1"] = summary["svf_over_lora_step_time"] <= 1.0
    return summary


def _worker_args(a: argparse.Namespace) -> list[str]:
    args = ["--batch", str(a.batch), "--seq", str(a.seq), "--warmup", str(a.warmup)]
    args += ["--repeats", str(a.repeats), "--seed", str(a.seed)]
    if a.model is not None:
        args += ["--model", a.model]
    if a.device is not None:
        args += ["--device", a.device]
    return args


def _run_subprocess(variant: str, args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "t2bench.bench.train_step", "--worker", variant, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode or not lines:
        raise RuntimeError(
            f"worker {variant} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def _format_table(summary: dict) -> str:
    cpu = any("peak_rss_kib" in r for r in summary["variants"].values())
    head = f"{'variant':8} {'median s':>9} {'/lora':>6} {'trainable':>10} {'optim KiB':>10}"
    head += (
        f" {'RSS build MiB':>14} {'peak steps MiB':>15} {'overhead MiB':>13}"
        if cpu
        else f" {'peak alloc MiB':>15} {'overhead MiB':>13}"
    )
    lines = [head]
    ratios = summary.get("step_time_over_lora", {})
    for v, r in summary["variants"].items():
        ratio = f"{ratios[v]:6.3f}" if v in ratios else f"{'-':>6}"
        line = (
            f"{v:8} {r['median_step_seconds']:9.3f} {ratio} {r['trainable_parameters']:10d} "
            f"{r['optimizer_state_bytes'] / 1024:10.1f}"
        )
        mib = lambda x, d=1024: f"{x / d:.1f}" if x is not None else "-"  # noqa: E731
        if cpu:
            peak = r.get("peak_rss_steps_kib", r.get("peak_rss_kib"))
            line += (
                f" {mib(r.get('rss_after_build_kib')):>14} {mib(peak):>15}"
                f" {mib(r.get('step_overhead_kib')):>13}"
            )
        else:
            line += (
                f" {mib(r.get('peak_allocated_steps_bytes'), 2**20):>15}"
                f" {mib(r.get('step_overhead_bytes'), 2**20):>13}"
            )
        lines.append(line)
    return "\n".join(lines)


def run(a: argparse.Namespace) -> dict:
    from t2bench.report.provenance import provenance

    t_start = time.perf_counter()
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}: use {', '.join(VARIANTS)}")
    order = schedule(variants, a.rounds)
    results = []
    for v in order:
        print(f"running {v} ...", flush=True)
        results.append(_run_subprocess(v, _worker_args(a)))
    summary = summarize(results)
    first = results[0]
    fingerprint = next((r["model_fingerprint"] for r in results if "model_fingerprint" in r), None)
    return {
        "model": first["model"],
        "device": first["device"],
        "batch_shape": [a.batch, a.seq],
        "loss": "next-token prediction over the last half of each sequence (mean token NLL)",
        "optimizer": "AdamW lr 2e-3, weight decay 0 (TrainConfig defaults), no clipping",
        "adapters": {
            "svf": "one vector per mlp matrix (gate, up, down), z parameterisation",
            "lora": "r16, alpha 32, dropout 0.05 on q_proj, v_proj",
            "ia3": "k_proj, v_proj, down_proj",
        },
        "order": order,
        **summary,
        "workers": results,
        "provenance": provenance(
            model=first["model"],
            model_fingerprint=fingerprint,
            seed=a.seed,
            batch_shape=[a.batch, a.seq],
            warmup=a.warmup,
            repeats=a.repeats,
            rounds=a.rounds,
            data="seeded random token ids, attention mask all ones",
            wall_s=time.perf_counter() - t_start,
        ),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=None, help="default: the packaged SmolLM2-135M-Instruct")
    p.add_argument("--device", default=None, help="default: auto (cuda, mps, cpu)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all variants")
    p.add_argument("--variants", default="svf,lora,ia3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/bench", help="folder for the JSON record")
    p.add_argument("--no-write", action="store_true", help="print only, write no record")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        r = worker(
            a.worker,
            model=a.model,
            device=a.device,
            batch=a.batch,
            seq=a.seq,
            warmup=a.warmup,
            repeats=a.repeats,
            seed=a.seed,
        )
        print(RESULT_PREFIX + json.dumps(r), flush=True)
        return
    r = run(a)
    print(f"model {r['model']} on {r['device']}, batch {a.batch}x{a.seq}, order {r['order']}")
    print(_format_table(r))
    if "svf_over_lora_step_time" in r:
        print(f"svf_over_lora_step_time {r['svf_over_lora_step_time']:.3f} (goal <= 1.0)")
    if a.no_write:
        return
    from t2bench.report.provenance import write_new

    print(f"written {write_new(Path(a.out), 'train-step', r)}")


if __name__ == "__main__":
    main()
