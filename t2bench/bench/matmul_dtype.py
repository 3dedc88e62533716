"""Does bf16 pay on this machine? One linear layer's forward + backward in fp32 and bf16.

    python -m t2bench.bench.matmul_dtype [--tokens 2048] [--rounds 5]

SmolLM2-135M's MLP shape (576 → 1536) on ``--tokens`` rows, forward and backward (input and
weight gradients), in alternating order over ``--rounds`` in one process; reports GFLOP/s per
dtype, the bf16/fp32 ratio, and what the CPU offers (``/proc/cpuinfo`` flags: AVX-512 bf16,
AMX) beside torch's own capability string. :func:`t2bench.train.policy.bf16_pays` reads the same
flags to resolve ``compute_dtype="auto"``. Writes a JSON record with provenance under
results/bench/.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from t2bench.core.io import new_record, results_path
from t2bench.core.provenance import provenance

DTYPES = (torch.float32, torch.bfloat16)


def step_seconds(x: torch.Tensor, w: torch.Tensor) -> float:
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    t0 = time.perf_counter()
    torch.nn.functional.linear(x, w).float().sum().backward()
    return time.perf_counter() - t0


def measure(tokens: int = 2048, d_in: int = 576, d_out: int = 1536, rounds: int = 5) -> dict:
    from t2bench.train.policy import bf16_pays, cpu_bf16_flags

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(tokens, d_in, generator=g), torch.randn(d_out, d_in, generator=g)
    flops = 3 * 2 * tokens * d_in * d_out  # forward + input grad + weight grad
    times: dict[str, list[float]] = {str(d): [] for d in DTYPES}
    for d in DTYPES:  # warm-up
        step_seconds(x.to(d), w.to(d))
    for r in range(rounds):
        for d in DTYPES if r % 2 == 0 else DTYPES[::-1]:
            times[str(d)].append(step_seconds(x.to(d), w.to(d)))
    gflops = {k: flops / statistics.median(v) / 1e9 for k, v in times.items()}
    return {
        "shape": {"tokens": tokens, "in": d_in, "out": d_out},
        "seconds": times,
        "gflops_per_s": {k: round(v, 2) for k, v in gflops.items()},
        "bf16_over_fp32": round(gflops["torch.bfloat16"] / gflops["torch.float32"], 3),
        "cpu_bf16_flags": cpu_bf16_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_pays_resolves_auto_to": "bfloat16" if bf16_pays(torch.device("cpu")) else "float32",
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(prog="python -m t2bench.bench.matmul_dtype", description=__doc__)
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(results_path("bench")))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rec = measure(tokens=args.tokens, rounds=args.rounds)
    print(
        f"fp32 {rec['gflops_per_s']['torch.float32']} GFLOP/s, bf16 "
        f"{rec['gflops_per_s']['torch.bfloat16']} GFLOP/s (bf16/fp32 {rec['bf16_over_fp32']}); "
        f"CPU bf16 flags {rec['cpu_bf16_flags'] or 'none'}, torch capability "
        f"{rec['torch_cpu_capability']}; compute_dtype=auto -> {rec['bf16_pays_resolves_auto_to']}"
    )
    if not args.no_write:
        rec["provenance"] = provenance(wall_seconds=round(time.perf_counter() - t0, 1))
        print(f"written: {new_record(Path(args.out), 'matmul-dtype', rec)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
