"""Commands that train experts and score them on held-out items. Each command's parser sits next to its handler."""

from __future__ import annotations

from t2bench.core.io import results_path


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


def add_train(sub) -> None:
    from t2bench.train.cli_args import add_train_args

    p = sub.add_parser(
        "train",
        help="train an SVF expert (REINFORCE + KL) or a LoRA / IA3 baseline; resumes from "
        "output_dir; several processes with `accelerate launch -m t2bench.train`",
    )
    add_train_args(p)
    p.set_defaults(func=cmd_train)


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


def add_experts(sub) -> None:
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
    chosen = record["selected"] or f"nothing ({record['no_signal']['finding']})"
    print(f"selected {chosen} -> {cfg.folder / 'sweep.md'}")
    return 0


def add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="lr x KL sweep of one recipe by short runs on its validation split (finished "
        "points are kept); writes sweep.md/json and learning curves",
    )
    p.add_argument("recipe", help="recipe name, e.g. reasoning-svf-pg")
    p.add_argument("--profile", default="cpu", choices=["cpu"])
    p.add_argument("--out", default=str(results_path("sweeps")))
    p.set_defaults(func=cmd_sweep)


def cmd_heldout(args) -> int:
    from pathlib import Path

    from t2bench.train.heldout import compare, markdown, merge

    if args.merge:
        payload = merge(
            [Path(m) for m in args.merge],
            runs=Path(args.runs),
            out=None if args.no_write else Path(args.out),
        )
        print(markdown(payload["provenance"]["data_split"]["task"], payload))
        if "path" in payload:
            print(f"written: {payload['path']}")
        return 0
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
            only=args.only.split(",") if args.only else None,
        )
        print(markdown(task, payload))
        if "path" in payload:
            print(f"written: {payload['path']}")
    return 0


def add_heldout(sub) -> None:
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
    p.add_argument(
        "--only",
        default=None,
        help="comma list of run names: score base and these runs only (default: every run)",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="RECORD",
        default=None,
        help="score nothing: join held-out records of the same items and conditions (the base "
        "must answer alike in all) into one record with every difference, SVF − other included",
    )
    p.add_argument("--no-write", action="store_true")
    p.set_defaults(func=cmd_heldout)
