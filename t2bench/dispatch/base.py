"""The dispatch interface, its registry and the two trivial strategies (``none``, ``fixed``).

A dispatcher sees the prompts of a batch of requests (and their task names) and returns one
Choice per request: an expert, a mixture (an Expert built by ``svf.mix``) or the base weights.
Requests with the same ``Choice.key`` share one composition of weights.

Strategies that run a first pass need the model: the backend calls ``bind`` once with a
DispatchContext before the first ``choose``. Specs are ``name``, ``name:<arg>`` or
``name:key=value;key=value`` (``;`` because lm-eval splits model_args on commas).
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert, serves


@dataclass(frozen=True)
class DispatchRequest:
    """What a first pass may look at: the prompt text and, for per-task strategies, the task."""

    text: str
    task: str | None = None
    doc_id: int | None = None


@dataclass(frozen=True)
class Choice:
    """An expert (or mixture) to answer with; ``expert=None`` means the base weights."""

    key: str
    expert: Expert | None = None


BASE = Choice("base", None)


@dataclass
class DispatchContext:
    """What a first pass may use: the live model and, where the backend has one, a runner.

    ``run(choice, method, requests)`` evaluates lm-eval requests (``loglikelihood`` or
    ``generate_until``) under a choice without dispatching them again; CEM scores its shots
    with it.
    """

    model: Any
    tokenizer: Any
    experts: Mapping[str, Expert]
    patcher: Any = None  # t2bench.svf.SVFPatcher, None without experts
    model_id: str = ""
    batch_size: int = 16
    run: Callable[[Choice, str, list], list] | None = None


class Dispatcher(ABC):
    """Picks a Choice per request. Subclasses set ``name`` and implement ``choose``.

    ``shardable``: the choice for a request depends only on that request (its text, task and
    document), never on which other requests arrive in the same ``choose`` call, so processes
    that each dispatch their own share of the requests answer as one process would. The
    backends run data-parallel only with such strategies; the default is the safe False.
    """

    name: str = "dispatcher"
    shardable: bool = False
    ctx: DispatchContext | None = None

    def bind(self, ctx: DispatchContext) -> None:
        """Called once by the backend before the first ``choose``."""
        self.ctx = ctx

    def context(self) -> DispatchContext:
        if self.ctx is None:
            raise ConfigError(
                f"dispatch={self.name} runs a first pass on the model: call bind(DispatchContext(...)) "
                "first (the t2 backend does this)"
            )
        return self.ctx

    @abstractmethod
    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]: ...

    def describe(self) -> dict:
        return {"strategy": self.name}


class NoDispatch(Dispatcher):
    """Always the base weights."""

    name = "none"
    shardable = True

    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]:
        return [BASE] * len(requests)


class FixedDispatch(Dispatcher):
    """Always the same expert."""

    name = "fixed"
    shardable = True

    def __init__(self, expert: Expert):
        self.choice = Choice(expert.meta.name, expert)

    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]:
        return [self.choice] * len(requests)

    def describe(self) -> dict:
        return {"strategy": self.name, "expert": self.choice.key}


# --------------------------------------------------------------------------- spec parsing


def parse_options(arg: str | None) -> dict[str, str]:
    """``key=value;key=value`` → dict (an empty or missing arg → {})."""
    out: dict[str, str] = {}
    for part in (arg or "").split(";"):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ConfigError(
                f"dispatch option {part!r} is not key=value: write e.g. cem:shots=5;population=8"
            )
        out[key.strip()] = value.strip()
    return out


def _convert(value: str, kind, key: str, strategy: str):
    origin = typing.get_origin(kind)
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if origin is typing.Union or (origin is not None and type(None) in typing.get_args(kind)):
        if value.lower() in ("none", ""):
            return None
        kind = args[0]
    if origin is typing.Literal:
        if value not in typing.get_args(kind):
            raise ConfigError(
                f"dispatch={strategy}: {key}={value!r} is not one of {list(typing.get_args(kind))}"
            )
        return value
    try:
        if kind is bool:
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        if kind in (int, float, str):
            return kind(value)
    except ValueError:
        raise ConfigError(
            f"dispatch={strategy}: {key}={value!r} is not a valid {kind.__name__}"
        ) from None
    return value


def options_to_config(cls, arg: str | None, strategy: str):
    """Build the strategy's config dataclass from ``key=value;…``, naming unknown keys."""
    given = parse_options(arg)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ConfigError(
            f"dispatch={strategy}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
        )
    return cls(**{k: _convert(v, hints[k], k, strategy) for k, v in given.items()})


# --------------------------------------------------------------------------- registry

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
    if arg in experts:
        return FixedDispatch(experts[arg])
    # a task label (math, code, reasoning) names the one loaded expert that serves it
    serving = sorted(name for name, e in experts.items() if serves(e, arg.lower()))
    if len(serving) == 1:
        return FixedDispatch(experts[serving[0]])
    if serving:
        raise ConfigError(
            f"dispatch=fixed:{arg}: several loaded experts serve task {arg!r}: {serving}; "
            "name one of them, e.g. fixed:" + serving[0]
        )
    raise ConfigError(
        f"dispatch=fixed:{arg}: no expert named {arg!r} and none serves a task {arg!r}; "
        f"loaded experts are {sorted(experts)}"
    )


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
