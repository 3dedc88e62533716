"""Post-import hook, run at interpreter start by ``t2bench_lmeval.pth``: stdlib only.

When (and only when) ``lm_eval.models`` is imported, register t2bench's backends right after
it, so the stock ``lm_eval --model t2`` works with lm-eval 0.4.13 and the built-in backends
stay visible. Nothing is imported at start-up beyond this module.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib.abc import MetaPathFinder

TARGET = "lm_eval.models"


def _register() -> None:
    try:
        from t2bench.backends import register

        register()
    except Exception as exc:  # never break lm-eval because of us
        print(f"t2bench: could not register the t2 backend with lm-eval: {exc}", file=sys.stderr)
    _one_line_errors()


#: Set to 1 to see the full traceback of a t2bench error under lm-eval's CLI.
TRACEBACK_ENV = "T2BENCH_TRACEBACK"


def _is_lm_eval_cli() -> bool:
    """True in the ``lm_eval`` console script and in ``python -m lm_eval``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "lm_eval.__main__":
        return True
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return prog in ("lm_eval", "lm-eval")


def _one_line_errors() -> None:
    """Under lm-eval's own CLI, an uncaught t2bench error (a bad model_arg, expert file or
    dispatch: errors the user fixes, each message naming the fix) prints its message as one
    ``error:`` line instead of a 30-line traceback; the exit status stays 1. Other exceptions,
    other programs and ``T2BENCH_TRACEBACK=1`` keep Python's traceback. lm-eval is not
    modified: this is ``sys.excepthook``, set only in that process."""
    if not _is_lm_eval_cli() or getattr(sys.excepthook, "_t2bench", False):
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        errors = sys.modules.get("t2bench.errors")
        if (
            errors is not None
            and issubclass(kind, errors.T2BenchError)
            and os.environ.get(TRACEBACK_ENV, "") in ("", "0")
        ):
            print(f"error: {value} (traceback: {TRACEBACK_ENV}=1)", file=sys.stderr)
        else:
            previous(kind, value, tb)

    hook._t2bench = True
    sys.excepthook = hook


class _Finder(MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)  # one shot; also avoids finding ourselves below
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            _register()

        spec.loader.exec_module = exec_and_register
        return spec


def install() -> None:
    if TARGET in sys.modules:
        _register()
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


install()
