"""The vision-language commands (`t2bench vlm ...`). Each command's parser sits next to its handler."""

from __future__ import annotations

import json


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
    from t2bench.vlm.recipes import train_vlm_recipes

    train_vlm_recipes(
        args.names or None, profile=args.profile, out_root=Path(args.out) if args.out else None
    )
    return 0


def add_vlm(sub) -> None:
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
    p.add_argument(
        "--profile",
        default="cpu",
        choices=["cpu", "gpu", "cpu-groups"],
        help="cpu: the experts-chars runs; cpu-groups: group advantages, 4800 samples",
    )
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
