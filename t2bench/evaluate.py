"""`t2bench eval`: lm-eval's own CLI with t2's defaults (``--model t2``, the offline tasks)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from t2bench.tasks import tasks_dir


def lm_eval_argv(args: list[str]) -> list[str]:
    """Add ``--model t2`` and ``--include_path <tasks>`` unless the caller gave them."""
    out = list(args)
    if not any(a == "--model" or a.startswith("--model=") for a in out):
        out = ["--model", "t2", *out]
    if not any(a == "--include_path" or a.startswith("--include_path=") for a in out):
        out += ["--include_path", str(tasks_dir())]
    return out


def run(args: list[str]) -> None:
    """Run ``lm_eval run <args>`` in this process, with t2's backends registered."""
    from lm_eval.__main__ import cli_evaluate

    from t2bench.backends import register

    register()
    argv = lm_eval_argv(args)
    sys.argv = ["lm_eval", "run", *argv]
    cli_evaluate()
    out = _option(argv, "--output_path")
    # data-parallel launches: rank 0 writes lm-eval's results, the others may end before it
    # has (and would read a half-written file)
    if out and int(os.environ.get("RANK", "0")) == 0:
        from t2bench.core.provenance import write_lm_eval_provenance

        for path in write_lm_eval_provenance(Path(out)):
            print(f"provenance: {path}")


def _option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None
