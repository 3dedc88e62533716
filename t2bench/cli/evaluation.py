"""Commands that evaluate: lm-eval, dispatch accuracy and the ablation tables. Each command's parser sits next to its handler."""

from __future__ import annotations

import argparse

from t2bench.core.io import results_path


def cmd_eval(args) -> int:
    from t2bench.evaluate import run

    run(args.lm_eval_args)
    return 0


def add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="lm_eval with --model t2 and the offline tasks by default; other arguments go to lm_eval",
        add_help=False,
    )
    p.add_argument("lm_eval_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_eval)


def cmd_confusion(args) -> int:
    from t2bench.dispatch.confusion_run import run

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


def add_confusion(sub) -> None:
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


def cmd_ablations(args) -> int:
    import os

    from t2bench.ablations import run_all, write_index

    if args.index_only:
        print(f"index: {write_index(args.out)}")
        return 0
    os.environ.setdefault("HF_ALLOW_CODE_EVAL", "1")  # HumanEval's pass@1 runs model code
    run_all(
        args.profile,
        only=args.only,
        out=args.out,
        resume=args.resume,
        allow_dirty=args.allow_dirty,
    )
    return 0


def add_ablations(sub) -> None:
    p = sub.add_parser(
        "ablations",
        help="the paper's tables at small scale (Tables 1-4, transfer, α, performance) into a "
        "new results/ablations/<profile>-<UTC time>/ folder",
    )
    p.add_argument(
        "--profile",
        default="cpu",
        help="cpu: packaged models on 2 cores, n chosen for power; paper: the paper's models and "
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
    p.add_argument(
        "--index-only",
        action="store_true",
        help="run nothing: rewrite <out>/README.md (verdict table, newest table of each kind, "
        "run list) and <out>/verdicts.json from the tables already there",
    )
    p.set_defaults(func=cmd_ablations)
