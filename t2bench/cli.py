"""The ``t2bench`` command. Each subcommand is a thin layer over a library function."""

from __future__ import annotations

import argparse
import json
import sys
import time

from t2bench.core.io import results_path
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
        problems = [p for n in (args.names or list(assets.ASSETS)) for p in assets.verify(n)]
        for p in problems:
            print(p)
        print("all cached assets verified" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    return 0


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


def cmd_eval(args) -> int:
    from t2bench.evaluate import run

    run(args.lm_eval_args)
    return 0


def cmd_train(args) -> int:
    from t2bench.train.cli_args import config_from_args
    from t2bench.train.trainer import train

    result = train(config_from_args(args))
    if result.summary.get("artifact"):
        print(f"artifact: {result.artifact}")
        print(
            f"best valid accuracy: {result.summary['best_valid_accuracy']} (step {result.summary['best_step']})"
        )
    return 0


def _draw_curves(folder) -> None:
    """Learning-curve PNGs of a finished run (``<run>/curves.png``) or sweep (``curves/``)."""
    from pathlib import Path

    from t2bench.report.curves import curve_png, sweep_curves

    folder = Path(folder)
    if (folder / "log.jsonl").exists():
        print(f"curves: {curve_png(folder, folder / 'curves.png')}", flush=True)
    else:
        for png in sweep_curves(folder):
            print(f"curves: {png}", flush=True)


def cmd_experts(args) -> int:
    from t2bench.train.recipes import run_recipes

    run_recipes(
        args.names or None,
        profile=args.profile,
        out_root=args.out,
        sweep_root=args.sweeps,
        on_finished=_draw_curves,
    )
    return 0


def cmd_sweep(args) -> int:
    from t2bench.errors import ConfigError
    from t2bench.train.recipes import sweep_config
    from t2bench.train.sweep import run_sweep

    cfg = sweep_config(args.recipe, args.profile, args.out)
    if cfg is None:
        raise ConfigError(
            f"the {args.profile} profile has no sweep for {args.recipe}: recipes with a sweep "
            "are the cpu profile's svf-pg, lora-pg, lora-ntp, ia3-ntp and svf-ntp runs"
        )
    record = run_sweep(cfg)
    _draw_curves(cfg.folder)
    print(f"selected {record['selected']} -> {cfg.folder / 'sweep.md'}")
    return 0


def cmd_ablations(args) -> int:
    import os

    from t2bench.ablations import run_all

    os.environ.setdefault("HF_ALLOW_CODE_EVAL", "1")  # HumanEval's pass@1 runs model code
    run_all(
        args.profile,
        only=args.only,
        out=args.out,
        resume=args.resume,
        allow_dirty=args.allow_dirty,
    )
    return 0


def cmd_vlm(args) -> int:
    from pathlib import Path

    if args.action == "assemble":
        from t2bench.vlm.models import DEFAULT_VLM, UNTRAINED_VLM, resolve_vlm

        _, folder = resolve_vlm(UNTRAINED_VLM if args.untrained else DEFAULT_VLM)
        print(folder)
        return 0
    if args.action == "pretrain":
        from t2bench.errors import ConfigError
        from t2bench.vlm.models import DEFAULT_PRETRAIN
        from t2bench.vlm.recipes import pretrain_recipe

        names = args.names or [DEFAULT_PRETRAIN]
        if args.out and len(names) > 1:
            raise ConfigError("--out names one output folder: pass one pre-training recipe")
        fields = (
            "stage_a_steps",
            "stage_b_steps",
            "eval_n",
            "init_from",
            "stage_a_lr",
            "lr_projector",
            "lr_vision",
            "device",
        )
        overrides = {k: getattr(args, k) for k in fields}
        overrides |= {
            "num_threads": args.threads,
            "output_dir": Path(args.out) if args.out else None,
        }
        for name in names:
            summary = pretrain_recipe(name, **overrides)
            acc = summary["valid_accuracy"]
            best = acc["best"]["overall"] if acc["best"] else None
            print(json.dumps({name: {"before": acc["before"]["overall"], "best": best}}))
        return 0
    from t2bench.vlm.recipes import EXPERTS_DIR, train_vlm_recipes

    train_vlm_recipes(
        args.names or None, profile=args.profile, out_root=Path(args.out or EXPERTS_DIR)
    )
    return 0


def cmd_seal(args) -> int:
    from t2bench.seal.inner import InnerConfig

    inner = InnerConfig(method=args.inner, steps=args.inner_steps, lr=args.inner_lr)
    if args.action == "tune":
        from t2bench.seal.tune import TuneConfig, write_tune

        out = write_tune(
            TuneConfig(
                output_dir=args.out or str(results_path("seal/inner-lr")),
                model=args.model,
                source=args.source,
                n=args.n or 6,
                steps=args.inner_steps,
                seed=args.seed,
            ),
            allow_dirty=args.allow_dirty,
        )
        print((out / "seal-inner-lr.md").read_text())
        return 0
    if args.action == "train":
        from t2bench.seal.restem import SealConfig, train_seal

        cfg = SealConfig(
            output_dir=args.out or str(results_path("seal/restem")),
            model=args.model,
            source=args.source,
            n_train=args.n or 12,
            variant=args.variant,
            k=args.k,
            rounds=args.rounds,
            inner=inner,
            seed=args.seed,
        )
        summary = train_seal(cfg)
        print(json.dumps(summary["rounds"], indent=2))
        return 0
    from t2bench.models import load_model
    from t2bench.seal.data import load_passages, read_passages_jsonl
    from t2bench.seal.experiment import edit_sequences, evaluate_condition

    passages = (
        read_passages_jsonl(args.data)
        if args.data
        else load_passages(args.source, args.split, n=args.n or 8, seed=args.seed)
    )
    if args.generator:
        from t2bench.seal.restem import load_generator

        loaded = load_generator(args.generator, args.generator_rounds, args.model)
    else:
        loaded = load_model(args.model)
    if args.action == "self-edit":
        from t2bench.seal.selfedit import generate_self_edits

        texts = generate_self_edits(
            loaded.model,
            loaded.tokenizer,
            passages,
            variant=args.variant,
            k=args.k,
            seed=args.seed,
            temperature=args.temperature,
        )
        print(
            json.dumps(
                [{"uid": p.uid, "self_edits": t} for p, t in zip(passages, texts, strict=True)],
                indent=2,
            )
        )
        return 0
    from t2bench.core.stats import accuracy

    edits = edit_sequences(
        loaded.model,
        loaded.tokenizer,
        passages,
        args.condition,
        variant=args.variant,
        seed=args.seed,
    )
    result = evaluate_condition(
        loaded.model,
        loaded.tokenizer,
        passages,
        edits,
        None if args.condition == "base" else inner,
        model_id=loaded.model_id,
        progress=True,
    )
    acc = accuracy([float(r["contains"]) for r in result["records"]])
    print(
        json.dumps(
            {
                "condition": args.condition,
                "inner": args.inner,
                **acc,
                "seconds": round(result["seconds"], 1),
                "diverged": [p["diverged"] for p in result["passages"] if "diverged" in p],
            },
            indent=2,
        )
    )
    return 0


def cmd_heldout(args) -> int:
    from pathlib import Path

    from t2bench.train.heldout import compare, markdown

    for task in args.tasks.split(","):
        payload = compare(
            task,
            n=args.n,
            runs=Path(args.runs),
            out=None if args.no_write else Path(args.out),
            model=args.model,
            seed=args.seed,
            batch=args.batch_size,
            difficulty=args.difficulty if task == "math" else "default",
            compute_dtype=args.compute_dtype,
        )
        print(markdown(task, payload))
        if "path" in payload:
            print(f"written: {payload['path']}")
    return 0


def cmd_confusion(args) -> int:
    from t2bench.dispatch.confusion import run

    folder = run(
        args.strategies,
        n_per_task=args.n,
        experts=args.experts or None,
        out_dir=args.out,
        pretrained=args.model,
        seed=args.seed,
        batch_size=args.batch_size,
        tasks=[t.strip() for t in args.tasks.split(",") if t.strip()],
    )
    print((folder / "confusion.md").read_text())
    print(f"written: {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t2bench", description="Train, dispatch and evaluate SVF experts."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("assets", help="packaged offline models and data: list, fetch, path, verify")
    p.add_argument("action", choices=["list", "fetch", "path", "verify"])
    p.add_argument(
        "names",
        nargs="*",
        help="asset names (default: all for fetch/verify, the default model for path)",
    )
    p.add_argument("--force", action="store_true", help="fetch again even if cached")
    p.set_defaults(func=cmd_assets)

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

    p = sub.add_parser("decompose", help="SVD of a model's adapted matrices into the on-disk cache")
    p.add_argument("model", nargs="?", default=None)
    _add_target_args(p)
    p.add_argument("--device", default=None)
    p.add_argument(
        "--no-cache", action="store_true", help="compute without reading or writing the cache"
    )
    p.set_defaults(func=cmd_decompose)

    p = sub.add_parser("expert", help="inspect, permute or mix expert files")
    p.add_argument("action", choices=["info", "permute", "mix"])
    p.add_argument("files", nargs="+")
    p.add_argument("--out", help="output file (permute, mix)")
    p.add_argument("--seed", type=int, default=0, help="permutation seed")
    p.add_argument("--alphas", help="comma-separated mixing weights (default: uniform)")
    p.add_argument("--name", default="mixture")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_expert)

    p = sub.add_parser(
        "eval",
        help="lm_eval with --model t2 and the offline tasks by default; other arguments go to lm_eval",
        add_help=False,
    )
    p.add_argument("lm_eval_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_eval)

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

    from t2bench.train.cli_args import add_train_args

    p = sub.add_parser(
        "train",
        help="train an SVF expert (REINFORCE + KL) or a LoRA / IA3 baseline; resumes from "
        "output_dir; several processes with `accelerate launch -m t2bench.train`",
    )
    add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "experts", help="train the recipes behind results/experts/ (finished runs are skipped)"
    )
    p.add_argument("names", nargs="*", help="recipe names (default: the profile's recipes)")
    p.add_argument("--profile", default="cpu", choices=["cpu", "smoke", "gpu"])
    p.add_argument("--out", default=str(results_path("experts")))
    p.add_argument(
        "--sweeps", default=str(results_path("sweeps")), help="where the lr/KL sweeps run"
    )
    p.set_defaults(func=cmd_experts)

    p = sub.add_parser(
        "sweep",
        help="lr x KL sweep of one recipe by short runs on its validation split (finished "
        "points are kept); writes sweep.md/json and learning curves",
    )
    p.add_argument("recipe", help="recipe name, e.g. reasoning-svf-pg")
    p.add_argument("--profile", default="cpu", choices=["cpu"])
    p.add_argument("--out", default=str(results_path("sweeps")))
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "heldout",
        help="score base and every trained run of a task on held-out test items (paired 95%% CI)",
    )
    p.add_argument("--tasks", default="reasoning,math,code,classifier")
    p.add_argument("--n", type=int, default=100, help="test items per task (seeded sample)")
    p.add_argument("--runs", default=str(results_path("experts")), help="folder of finished runs")
    p.add_argument(
        "--out", default=str(results_path("experts")), help="where the record is written"
    )
    p.add_argument("--model", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--difficulty",
        default="default",
        choices=["default", "mix"],
        help="math only: score the test split of the difficulty mix (1200 items)",
    )
    p.add_argument(
        "--compute-dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="bfloat16: adapters composed or merged in fp32, then the model cast to bf16",
    )
    p.add_argument("--no-write", action="store_true")
    p.set_defaults(func=cmd_heldout)

    p = sub.add_parser(
        "confusion",
        help="dispatch accuracy: true task category x chosen expert per strategy, on held-out "
        "lm-eval prompts (tables, plots, 95%% CI) in a new <out>/confusion-<UTC time>/",
    )
    p.add_argument("--strategies", default="prompt,label,classifier,router")
    p.add_argument("--n", type=int, default=50, help="evaluation docs per task (seeded sample)")
    p.add_argument(
        "--experts",
        default=str(results_path("experts")),
        help="expert file or folder ('' for none)",
    )
    p.add_argument("--out", default=str(results_path("dispatch")))
    p.add_argument("--tasks", default="gsm8k,minerva_math,humaneval,mbpp,arc_challenge")
    p.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=cmd_confusion)

    p = sub.add_parser(
        "vlm",
        help="the assembled vision-language model: assemble it, pre-train its vision side on "
        "generated text-in-image VQA, train its SVF expert and LoRA baseline",
    )
    p.add_argument("action", choices=["assemble", "pretrain", "train"])
    p.add_argument(
        "names",
        nargs="*",
        help="pretrain: recipe names (default: the default model's); train: recipe names "
        "(default: all)",
    )
    p.add_argument("--untrained", action="store_true", help="assemble: the untrained vision side")
    p.add_argument("--out", default=None, help="pretrain / train: output folder")
    p.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--threads", type=int, default=None, help="pretrain: torch threads")
    p.add_argument("--stage-a-steps", dest="stage_a_steps", type=int, default=None)
    p.add_argument("--stage-b-steps", dest="stage_b_steps", type=int, default=None)
    p.add_argument("--eval-n", dest="eval_n", type=int, default=None)
    p.add_argument(
        "--init-from",
        dest="init_from",
        default=None,
        help="pretrain: start from this run's vision.safetensors instead of random weights",
    )
    p.add_argument("--stage-a-lr", dest="stage_a_lr", type=float, default=None)
    p.add_argument("--lr-projector", dest="lr_projector", type=float, default=None)
    p.add_argument("--lr-vision", dest="lr_vision", type=float, default=None)
    p.add_argument("--device", default=None, help="pretrain: cuda, cpu, ... (default: the best)")
    p.set_defaults(func=cmd_vlm)

    p = sub.add_parser(
        "seal",
        help="SEAL-style self-editing: write self-edits, train the generator with ReST-EM, "
        "evaluate closed-book QA after inner updates (SVF or LoRA)",
    )
    p.add_argument("action", choices=["self-edit", "train", "evaluate", "tune"])
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="tune: publish the grid from a checkout with uncommitted changes (recorded)",
    )
    p.add_argument("--model", default=None, help="default: the packaged SmolLM2-135M-Instruct")
    p.add_argument("--source", default="fictional", choices=["fictional", "squad"])
    p.add_argument("--split", default="eval", choices=["train", "eval"], help="(tune: train)")
    p.add_argument("--data", default=None, help="a JSONL of passages instead of --source")
    p.add_argument("--n", type=int, default=None, help="number of passages")
    p.add_argument("--variant", default="implications", choices=["implications", "rewrite", "qa"])
    p.add_argument("--condition", default="self-edit", choices=["base", "passage", "self-edit"])
    p.add_argument("--inner", default="lora", choices=["lora", "svf"])
    p.add_argument("--inner-steps", dest="inner_steps", type=int, default=8)
    p.add_argument("--inner-lr", dest="inner_lr", type=float, default=None)
    p.add_argument("--k", type=int, default=3, help="self-edits per passage")
    p.add_argument("--rounds", type=int, default=2, help="train: ReST-EM rounds")
    p.add_argument("--temperature", type=float, default=1.0, help="self-edit: 0 = greedy")
    p.add_argument("--generator", default=None, help="evaluate: a ReST-EM run folder")
    p.add_argument("--generator-rounds", dest="generator_rounds", type=int, default=1)
    p.add_argument(
        "--out",
        default=None,
        help="train: run folder (default results/seal/restem); tune: the inner-lr grid's "
        "folder (default results/seal/inner-lr)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_seal)

    p = sub.add_parser(
        "ablations",
        help="the paper's tables at small scale (Tables 1-4, transfer, α, performance) into a "
        "new results/ablations/<profile>-<UTC time>/ folder",
    )
    p.add_argument(
        "--profile",
        default="cpu",
        help="cpu: packaged models, under an hour on 2 cores; paper: the paper's models and "
        "full test sets (a GPU machine with a hub)",
    )
    p.add_argument(
        "--only",
        default=None,
        help="comma list: table1,table4,table2,table3,transfer,alpha,vlm,seal,forgetting,squad,"
        "performance",
    )
    p.add_argument("--out", default=str(results_path("ablations")))
    p.add_argument(
        "--resume", default=None, help="an interrupted run's folder: reuse its evaluations"
    )
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="publish from a checkout with uncommitted changes (recorded in every table)",
    )
    p.set_defaults(func=cmd_ablations)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["eval"]:  # everything after `eval` belongs to lm_eval, --help included
        return cmd_eval(argparse.Namespace(lm_eval_args=argv[1:]))
    args = build_parser().parse_args(argv)
    if args.command == "expert" and args.action in ("permute", "mix") and not args.out:
        print("error: --out is required for permute and mix", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (T2BenchError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
