"""Dispatch: the first pass that picks an expert, a mixture or the base weights per prompt."""

from t2bench.dispatch.base import (
    BASE,
    Choice,
    DispatchContext,
    Dispatcher,
    DispatchRequest,
    FixedDispatch,
    NoDispatch,
    make_dispatcher,
    register_dispatcher,
    strategy_names,
)

__all__ = [
    "BASE",
    "Choice",
    "DispatchContext",
    "DispatchRequest",
    "Dispatcher",
    "FixedDispatch",
    "NoDispatch",
    "make_dispatcher",
    "register_dispatcher",
    "strategy_names",
]
