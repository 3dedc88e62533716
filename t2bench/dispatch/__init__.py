"""Dispatch: the first pass that picks an expert, a mixture or the base weights per prompt.

Importing the package registers every strategy: ``none`` and ``fixed`` (:mod:`.base`),
``prompt``, ``classifier`` and ``label`` (:mod:`.prompted`), ``cem`` (:mod:`.fewshot`) and
``router`` (:mod:`.router`). The registry in :mod:`.base` never imports its strategies."""

from t2bench.dispatch import fewshot, prompted, router  # noqa: F401  (registers the strategies)
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
