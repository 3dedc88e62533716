"""SVF cost on a real model: cold SVD vs cached load; composing all matrices vs one forward.

    python -m t2bench.bench.svf [--model NAME] [--modules mlp] [--repeats 3]

Writes a new JSON file with provenance under results/bench/ and prints the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from t2bench.core.io import new_record, results_path
from t2bench.core.provenance import provenance
from t2bench.models import load_model
from t2bench.svf import SVFPatcher, TargetSpec, decompose, identity_expert


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(
    model: str | None, modules: str, svd_modules: str, repeats: int, batch: int, seq: int, seed: int
) -> dict:
    t_start = time.perf_counter()
    lm = load_model(model)
    svd_spec = TargetSpec(svd_modules)

    def _decompose(spec: TargetSpec, cache: Path, **kw):
        return decompose(
            lm.model, spec, cache_dir=cache, progress=False, model_id=lm.model_id, **kw
        )

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        cold = _median_time(lambda: _decompose(svd_spec, cache, use_cache=False), 1)
        svd_matrices = len(_decompose(svd_spec, cache).targets)  # fills the cache
        warm = _median_time(lambda: _decompose(svd_spec, cache), repeats)
        d = _decompose(TargetSpec(modules), cache)

    g = torch.Generator().manual_seed(seed)
    expert = identity_expert(d, name="bench")
    expert.params = {
        k: 1 + 0.2 * (torch.rand(v.shape, generator=g) - 0.5) for k, v in expert.params.items()
    }
    patcher = SVFPatcher(lm.model, d)
    patcher.apply(expert)  # warm-up, and the one-time base snapshot
    compose = _median_time(lambda: patcher.apply(expert), repeats)
    restore = _median_time(patcher.restore, repeats)

    ids = torch.randint(0, lm.model.config.vocab_size, (batch, seq), generator=g).to(
        lm.model.device
    )
    with torch.no_grad():
        lm.model(ids[:1, :16])
        forward = _median_time(lambda: lm.model(ids), repeats)

    result = {
        "model": lm.model_id,
        "modules": modules,
        "matrices": len(d.targets),
        "svf_parameters": d.num_parameters(),
        "svd_modules": svd_modules,
        "svd_matrices": svd_matrices,
        "seconds": {
            f"svd_cold_{svd_modules}": cold,
            f"svd_cached_load_{svd_modules}": warm,
            f"compose_all_{modules}": compose,
            "restore": restore,
            f"forward_{batch}x{seq}": forward,
        },
        "ratios": {
            "svd_cold_over_cached": cold / warm,
            f"compose_over_forward_{batch}x{seq}": compose / forward,
        },
    }
    result["provenance"] = provenance(
        model_fingerprint=d.fingerprint,
        seed=seed,
        repeats=repeats,
        data="random token ids",
        wall_s=time.perf_counter() - t_start,
    )
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=None)
    p.add_argument(
        "--modules", default="mlp", help="module set composed in the compose-vs-forward timing"
    )
    p.add_argument(
        "--svd-modules", default="all", help="module set for the cold-vs-cached SVD timing"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(results_path("bench")), help="folder for the JSON record")
    a = p.parse_args(argv)
    r = run(a.model, a.modules, a.svd_modules, a.repeats, a.batch, a.seq, a.seed)
    for k, v in r["seconds"].items():
        print(f"{k:28} {v:8.3f} s")
    for k, v in r["ratios"].items():
        print(f"{k:28} {v:8.3f}")
    print(f"written {new_record(Path(a.out), 'svf', r)}")


if __name__ == "__main__":
    main()
