"""Rewards for expert training: is a completion right for its :class:`TrainItem`?

Extraction is deliberately strict and never guesses: a completion from which no answer can
be read is wrong (``None`` from an ``extract_*`` function), so a policy cannot collect reward
by chance-level output such as a random letter.

* ``math``: the number after the last "answer is" (else the last number in the text),
  compared with the integer target as a number ("4.0" == "4", "1,234" == "1234").
* ``reasoning``: the letter from "The answer is (B)", "answer: B", a bare "B" / "B." / "B)",
  or the last "(C)"; only letters of the item's own choices count.
* ``classifier``: the last ``\\boxed{...}`` if it holds a label, else the one label word in
  the text (none or several -> wrong).
* ``code``: the first fenced block is run with the item's setup code and assert lines in
  the sandbox of :mod:`t2bench.tasks.code_exec` (opt-in ``HF_ALLOW_CODE_EVAL=1``; runner
  ``bwrap`` unless ``T2BENCH_CODE_RUNNER=unisolated``, recorded as ``code_runner`` in the
  run's provenance); it is correct when every assert passes within 10 s. The setup code goes *after* the candidate,
  not before it: the one MBPP item with setup code (367) builds trees from the ``Node``
  class that the solution defines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from t2bench.data.splits import CLASSIFIER_LABELS, TrainItem
from t2bench.errors import ConfigError
from t2bench.tasks import code_exec
from t2bench.tasks.vqa_metric import clean_prediction, normalize_answer

__all__ = [
    "REWARD_TASKS",
    "RewardSpec",
    "check_task",
    "code_runner",
    "extract_code",
    "extract_label",
    "extract_letter",
    "extract_number",
    "is_correct",
    "score",
]

REWARD_TASKS = ("math", "reasoning", "code", "classifier", "vqa")
CODE_LIMITS = code_exec.Limits(timeout_s=10)

# A sign is a minus not glued to a preceding word, digit or bracket ("3-4" is not "-4").
_NUMBER = r"(?:(?<![\w)])-)?\$?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_ANSWER_NUMBER_RE = re.compile(r"answer(?:\s+is|\s*:)\s*:?\s*[*_(\[]*\s*(" + _NUMBER + ")", re.I)
_ANSWER_LETTER_RE = re.compile(r"(?i:answer)(?:\s+is|\s*:)\s*:?\s*[*_]*\(?([A-Z])\)?(?!\w)")
_BARE_LETTER_RE = re.compile(r"[*\s]*\(?([A-Z])[.):]?[*\s]*")
_PAREN_LETTER_RE = re.compile(r"\(([A-Z])\)")
_CHOICE_LINE_RE = re.compile(r"^[A-Z]\. ", re.M)
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")
_PYTHON_BLOCK_RE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)```", re.S | re.I)
_ANY_BLOCK_RE = re.compile(r"```[^\n`]*\n(.*?)```", re.S)


@dataclass(frozen=True)
class RewardSpec:
    """Reward for a correct and for a wrong completion (the VLM recipe uses wrong=-0.1)."""

    correct: float = 1.0
    wrong: float = -1.0


def check_task(task: str) -> str:
    """Validate ``task`` before training starts; ``code`` also needs the code-eval opt-in."""
    if task not in REWARD_TASKS:
        raise ConfigError(f"unknown reward task {task!r}; valid tasks: {', '.join(REWARD_TASKS)}")
    if task == "code":
        code_exec.require_opt_in()
    return task


def code_runner(task: str) -> str | None:
    """The runner that code rewards run programs under (``bwrap`` or ``unisolated``, see
    :mod:`t2bench.tasks.sandbox`), for run records; ``None`` for tasks that run no code."""
    return code_exec.code_runner() if task == "code" else None


def canonical_number(text: str) -> str | None:
    """``"$1,234.50"`` -> ``"1234.5"``, ``"4.0"`` -> ``"4"``; ``None`` if not a number."""
    try:
        value = Decimal(text.replace("$", "").replace(",", "").strip())
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_number(text: str) -> str | None:
    """The number after the last "answer is", else the last number; canonical form."""
    answers = _ANSWER_NUMBER_RE.findall(text)
    if answers:
        return canonical_number(answers[-1])
    numbers = _NUMBER_RE.findall(text)
    return canonical_number(numbers[-1]) if numbers else None


def extract_letter(text: str, n_choices: int) -> str | None:
    """The chosen letter, or ``None`` when none is given or it is not among the choices.

    Precedence: an "answer is / answer:" statement (the last one), a reply that is only a
    letter, the last parenthesised letter.
    """
    valid = {chr(ord("A") + i) for i in range(max(0, n_choices))}
    stated = _ANSWER_LETTER_RE.findall(text)
    bare = _BARE_LETTER_RE.fullmatch(text)
    parens = _PAREN_LETTER_RE.findall(text)
    if stated:
        letter = stated[-1]
    elif bare:
        letter = bare.group(1)
    elif parens:
        letter = parens[-1]
    else:
        return None
    return letter if letter in valid else None


def extract_label(text: str, labels: Sequence[str]) -> str | None:
    """The last ``\\boxed{}`` label, else the only label word in the text, else ``None``."""
    by_lower = {label.lower(): label for label in labels}
    boxed = _BOXED_RE.findall(text)
    if boxed and boxed[-1].strip().lower() in by_lower:
        return by_lower[boxed[-1].strip().lower()]
    found = [
        label for label in labels if re.search(rf"\b{re.escape(label)}\b", text, re.IGNORECASE)
    ]
    return found[0] if len(found) == 1 else None


def extract_code(text: str) -> str:
    """The first ```python block (else the first fenced block); for a lone fence, the text
    before it (the prompt opened the block) or after it (generation was cut off)."""
    block = _PYTHON_BLOCK_RE.search(text) or _ANY_BLOCK_RE.search(text)
    if block:
        return block.group(1)
    fence = text.find("```")
    if fence < 0:
        return text
    head = text[:fence]
    if head.strip():
        return head
    rest = text[fence + 3 :]
    body = rest.split("\n", 1)[1] if "\n" in rest else ""
    return body.split("```", 1)[0]


def _code_passes(completion: str, item: TrainItem) -> bool:
    code = extract_code(completion)
    if not code.strip():
        return False
    parts = [code, item.setup, "\n".join(item.tests)]
    program = "\n".join(part for part in parts if part)
    return code_exec.run_program(program, CODE_LIMITS).passed


def is_correct(task: str, completion: str, item: TrainItem) -> bool:
    """Whether ``completion`` answers ``item`` correctly under ``task``'s reward."""
    if task not in REWARD_TASKS:
        raise ConfigError(f"unknown reward task {task!r}; valid tasks: {', '.join(REWARD_TASKS)}")
    if task == "math":
        got, gold = extract_number(completion), canonical_number(item.target)
        return got is not None and gold is not None and Decimal(got) == Decimal(gold)
    if task == "reasoning":
        n_choices = len(_CHOICE_LINE_RE.findall(item.prompt))
        return extract_letter(completion, n_choices) == item.target
    if task == "classifier":
        return extract_label(completion, CLASSIFIER_LABELS) == item.target
    if task == "vqa":  # the VQA normalisation; synthetic answers are one string, so 0 or 1
        got = normalize_answer(clean_prediction(completion))
        return bool(got) and got == normalize_answer(item.target)
    return _code_passes(completion, item)


def score(
    task: str,
    completions: Sequence[str],
    items: Sequence[TrainItem],
    spec: RewardSpec = RewardSpec(),
    max_workers: int = 4,
) -> tuple[list[float], list[bool]]:
    """Rewards and correctness for ``completions[i]`` against ``items[i]``.

    Code items run in parallel (each in its own sandboxed process), the rest inline.
    """
    check_task(task)
    if len(completions) != len(items):
        raise ValueError(f"{len(completions)} completions but {len(items)} items")
    pairs = list(zip(completions, items, strict=True))
    if task == "code" and len(pairs) > 1 and max_workers > 1:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            correct = list(pool.map(lambda pair: is_correct(task, *pair), pairs))
    else:
        correct = [is_correct(task, completion, item) for completion, item in pairs]
    return [spec.correct if ok else spec.wrong for ok in correct], correct
