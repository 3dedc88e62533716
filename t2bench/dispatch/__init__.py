"""Dispatch: the first pass that picks an expert, a mixture or the base weights per prompt.

Importing the package registers every strategy: ``none`` and ``fixed`` (:mod:`.base`),
``prompt`` and ``classifier`` (:mod:`.prompt_strategy`), ``label`` (:mod:`.label_strategy`),
both on the shared :mod:`.first_pass`; ``cem`` (:mod:`.cem_strategy`, searching with
:mod:`.cem_optimizer`) and ``router`` (:mod:`.router`). The expert categories (code, math,
reasoning, other) and which expert serves each are :mod:`.categories`. The registry in
:mod:`.base` never imports its strategies."""

from t2bench.dispatch import (  # noqa: F401  (importing registers the strategies)
    cem_strategy,
    label_strategy,
    prompt_strategy,
    router,
)
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
