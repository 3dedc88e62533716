"""Post-import hook, run at interpreter start by ``t2bench_lmeval.pth``: stdlib only.

When (and only when) ``lm_eval.models`` is imported, register t2bench's backends right after
it, so the stock ``lm_eval --model t2`` works with lm-eval 0.4.13 and the built-in backends
stay visible. Nothing is imported at start-up beyond this module.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.abc import MetaPathFinder

TARGET = "lm_eval.models"


def _register() -> None:
    try:
        from t2bench.backends import register

        register()
    except Exception as exc:  # never break lm-eval because of us
        print(f"t2bench: could not register the t2 backend with lm-eval: {exc}", file=sys.stderr)


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
