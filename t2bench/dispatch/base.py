"""The dispatch interface and the two trivial strategies (``none``, ``fixed:<expert>``).

A dispatcher sees the prompts of a batch of requests (and their task names) and returns one
Choice per request. Requests with the same ``Choice.key`` share one composition of weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert


@dataclass(frozen=True)
class DispatchRequest:
    """What a first pass may look at: the prompt text and, for oracles, the task name."""

    text: str
    task: str | None = None
    doc_id: int | None = None


@dataclass(frozen=True)
class Choice:
    """An expert (or mixture) to answer with; ``expert=None`` means the base weights."""

    key: str
    expert: Expert | None = None


BASE = Choice("base", None)


class Dispatcher(ABC):
    """Picks a Choice per request. Subclasses set ``name`` and implement ``choose``."""

    name: str = "dispatcher"

    @abstractmethod
    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]: ...

    def describe(self) -> dict:
        return {"strategy": self.name}


class NoDispatch(Dispatcher):
    """Always the base weights."""

    name = "none"

    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]:
        return [BASE] * len(requests)


class FixedDispatch(Dispatcher):
    """Always the same expert."""

    name = "fixed"

    def __init__(self, expert: Expert):
        self.choice = Choice(expert.meta.name, expert)

    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]:
        return [self.choice] * len(requests)

    def describe(self) -> dict:
        return {"strategy": self.name, "expert": self.choice.key}


Factory = Callable[[str | None, Mapping[str, Expert]], Dispatcher]
_REGISTRY: dict[str, Factory] = {}


def register_dispatcher(name: str, factory: Factory) -> None:
    """Make ``dispatch=<name>[:<arg>]`` build a dispatcher with ``factory(arg, experts)``."""
    if name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ConfigError(f"dispatch strategy {name!r} is already registered")
    _REGISTRY[name] = factory


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def _none(arg: str | None, experts: Mapping[str, Expert]) -> Dispatcher:
    if arg:
        raise ConfigError(f"dispatch=none takes no argument (got none:{arg})")
    return NoDispatch()


def _fixed(arg: str | None, experts: Mapping[str, Expert]) -> Dispatcher:
    if not experts:
        raise ConfigError("dispatch=fixed needs experts: pass experts=<folder or files>")
    if not arg:
        if len(experts) == 1:
            return FixedDispatch(next(iter(experts.values())))
        raise ConfigError(
            f"dispatch=fixed needs an expert name: fixed:<name> with <name> in {sorted(experts)}"
        )
    if arg not in experts:
        raise ConfigError(
            f"dispatch=fixed:{arg}: no expert named {arg!r}; loaded experts are {sorted(experts)}"
        )
    return FixedDispatch(experts[arg])


register_dispatcher("none", _none)
register_dispatcher("fixed", _fixed)


def make_dispatcher(spec: str | Dispatcher, experts: Mapping[str, Expert]) -> Dispatcher:
    """Build a dispatcher from ``name`` or ``name:arg`` (or pass an instance through)."""
    if isinstance(spec, Dispatcher):
        return spec
    name, _, arg = str(spec).partition(":")
    factory = _REGISTRY.get(name.strip().lower())
    if factory is None:
        raise ConfigError(
            f"unknown dispatch strategy {spec!r}: use one of {', '.join(strategy_names())} (e.g. fixed:<expert>)"
        )
    return factory(arg.strip() or None, experts)
