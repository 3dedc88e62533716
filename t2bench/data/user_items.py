"""User-supplied training items: a JSONL file of prompt / target (/ reference, tests) records,
checked so that the task's reward can score every target."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from t2bench.classify_prompt import EXPERT_LABELS as CLASSIFIER_LABELS
from t2bench.data.items import TrainItem, check_task
from t2bench.errors import ConfigError


def _is_number(text: str) -> bool:
    try:
        return Decimal(text.replace(",", "")).is_finite()
    except InvalidOperation:
        return False


def _target_problem(task: str, prompt: str, target: str) -> str | None:
    """Why ``target`` cannot be scored for ``task``, or ``None`` when it can."""
    if task == "math" and not _is_number(target):
        return f"'target' must be a number for the math task, got {target!r}"
    if task == "reasoning" and not re.fullmatch(r"[A-Z]", target):
        return f"'target' must be one capital letter for the reasoning task, got {target!r}"
    if task == "reasoning" and target not in re.findall(r"^([A-Z])\. ", prompt, re.M):
        return (
            f"target {target!r} is not among the prompt's choices; the reward reads the "
            "choices from prompt lines of the form 'A. text'"
        )
    if task == "classifier" and target not in CLASSIFIER_LABELS:
        return f"'target' must be one of {', '.join(CLASSIFIER_LABELS)}, got {target!r}"
    return None


def _default_reference(task: str, target: str) -> str:
    """A reference in the format the reward extracts (code has no gold program here)."""
    return {
        "math": f"The answer is {target}.",
        "reasoning": f"The answer is ({target}).",
        "classifier": f"\\boxed{{{target}}}",
    }.get(task, "")


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def load_jsonl_items(path: str | Path, task: str) -> list[TrainItem]:
    """Items from a JSON-lines file: ``prompt`` and ``target`` per line (strings), optional
    ``uid``, ``reference``, ``tests`` (list of assert lines, required for code) and ``setup``.

    Every error is a ``ConfigError`` naming the file, the line and the fix, so a bad file
    fails before any training starts.
    """
    check_task(task)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training data file {path} does not exist; pass a JSON-lines file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from exc
    items: list[TrainItem] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where}: invalid JSON ({exc.msg}); each line must be one JSON object"
            ) from exc
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in ("prompt", "target"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise ConfigError(
                    f"{where}: missing or non-string {key!r}; add a non-empty {key!r} string"
                )
        for key in ("uid", "reference", "setup"):
            if key in row and not isinstance(row[key], str):
                raise ConfigError(f"{where}: {key!r} must be a string")
        if "tests" in row and not _string_list(row["tests"]):
            raise ConfigError(f"{where}: 'tests' must be a list of strings (assert lines)")
        if task == "code" and not row.get("tests"):
            raise ConfigError(f"{where}: code items need 'tests' (assert lines) to be scored")
        target = row["target"].strip()
        problem = _target_problem(task, row["prompt"], target)
        if problem:
            raise ConfigError(f"{where}: {problem}")
        uid = row.get("uid") or f"{path.stem}-{number}"
        if uid in first_line:
            raise ConfigError(
                f"{where}: duplicate uid {uid!r} (first on line {first_line[uid]}); "
                "make every uid unique"
            )
        first_line[uid] = number
        items.append(
            TrainItem(
                uid=uid,
                task=task,
                prompt=row["prompt"],
                target=target,
                reference=row.get("reference") or _default_reference(task, target),
                tests=tuple(row.get("tests", ())),
                setup=row.get("setup", ""),
            )
        )
    if not items:
        raise ConfigError(
            f"no items in {path}: write one JSON object per line with 'prompt' and 'target'"
        )
    return items
