"""The ``t2bench`` command. Each subcommand is a thin layer over a library function; its parser
and handler live together in one module of this package (models, training, evaluation, vlm,
seal)."""

from __future__ import annotations

import argparse
import sys

from t2bench.cli import evaluation, models, seal, training, vlm
from t2bench.core.io import WRITE_ERRNOS, os_error_of, write_error_message
from t2bench.errors import T2BenchError

#: Subcommands in the order ``t2bench --help`` lists them.
COMMANDS = (
    models.add_assets,
    models.add_params,
    models.add_decompose,
    models.add_expert,
    evaluation.add_eval,
    models.add_demo,
    training.add_train,
    training.add_experts,
    training.add_sweep,
    training.add_heldout,
    evaluation.add_confusion,
    vlm.add_vlm,
    seal.add_seal,
    evaluation.add_ablations,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t2bench", description="Train, dispatch and evaluate SVF experts."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["eval"]:  # everything after `eval` belongs to lm_eval, --help included
        args = argparse.Namespace(lm_eval_args=argv[1:], func=evaluation.cmd_eval)
    else:
        args = build_parser().parse_args(argv)
        if args.command == "expert" and args.action in ("permute", "mix") and not args.out:
            print("error: --out is required for permute and mix", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except (T2BenchError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # a full, read-only or forbidden output location met where no caller named it (a
        # library's own writer): one line with the cause and the place, not a traceback
        os_exc = os_error_of(exc)
        if os_exc is None or os_exc.errno not in WRITE_ERRNOS:
            raise
        print(f"error: {write_error_message(os_exc, os_exc.filename)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
