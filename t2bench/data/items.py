"""What every task's data is made of: a :class:`TrainItem` (prompt, target, reference, tests,
image), the three splits of a task (:class:`Splits`), and the task names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from t2bench.errors import ConfigError

TASKS = ("math", "reasoning", "code", "classifier", "vqa")
SPLIT_NAMES = ("train", "valid", "test")


@dataclass(frozen=True)
class TrainItem:
    """One training / evaluation example, in the form the trainer and rewards use."""

    uid: str
    task: str
    prompt: str
    target: str
    reference: str
    tests: tuple[str, ...] = ()
    setup: str = ""
    image: Any = field(default=None, compare=False, hash=False, repr=False)  # PIL, VLM tasks


@dataclass
class Splits:
    """The three disjoint splits of one task; ``test`` is only for final evaluation."""

    task: str
    train: list[TrainItem]
    valid: list[TrainItem]
    test: list[TrainItem]
    description: dict[str, Any]


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"unknown training task {task!r}; valid tasks: {', '.join(TASKS)}")
