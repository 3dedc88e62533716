"""Command-line options generated from :class:`TrainConfig` (one flag per field)."""

from __future__ import annotations

import argparse
import json
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from t2bench.errors import ConfigError
from t2bench.train.config import TrainConfig
from t2bench.train.recipes import recipe


def _kind(tp) -> type | None:
    """The scalar type behind a field annotation (``int | None`` -> int); None for dicts."""
    if isinstance(tp, str):
        tp = eval(tp, vars(typing) | {"dict": dict})  # annotations are strings (PEP 563)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    return base if base in (int, float, str, bool) else None


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help="start from a named recipe (see t2bench.train.recipes)")
    p.add_argument("--profile", default="cpu", help="recipe budget: cpu or gpu (default cpu)")
    p.add_argument("--config", help="JSON file with TrainConfig fields; flags override it")
    for f in fields(TrainConfig):
        kind = _kind(f.type)
        if kind is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        if kind is bool:
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"(default {default})",
            )
        else:
            p.add_argument(flag, type=kind, default=None, help=f"(default {default})")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if getattr(args, "recipe", None):
        values = recipe(args.recipe, args.profile)
    if args.config:
        path = Path(args.config)
        try:
            loaded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read training config {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a JSON object of TrainConfig fields")
        values |= loaded
    for f in fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    return TrainConfig.from_dict(values)
