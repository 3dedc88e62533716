"""SEAL-style self-editing (`t2bench seal ...`). Each command's parser sits next to its handler."""

from __future__ import annotations

import json

from t2bench.core.io import results_path


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
    from t2bench.seal.data import load_passages
    from t2bench.seal.experiment import edit_sequences, evaluate_condition
    from t2bench.seal.passages import read_passages_jsonl

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


def add_seal(sub) -> None:
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
