"""Self-edits: the prompts that ask a model to restate a passage, the parsing of what it writes
into training lines, and the training sequences of an inner update.

Three variants, as in SEAL's knowledge-incorporation experiments: ``implications`` (a list of
facts that follow from the passage), ``rewrite`` (the passage restated in short sentences) and
``qa`` (question-answer pairs). The prompts are this project's own wording.
"""

from __future__ import annotations

import re
import zlib

from t2bench.errors import ConfigError, T2BenchError
from t2bench.seal.passages import Passage

__all__ = [
    "VARIANTS",
    "EmptySelfEditError",
    "generate_self_edits",
    "parse_self_edit",
    "selfedit_prompt",
    "training_sequences",
]

_BODY = "\n\nTitle: {title}\nPassage: {text}"

VARIANTS: dict[str, str] = {
    "implications": (
        "Read the passage below and list the facts it states or implies, one short sentence "
        "per line. Name the subject in every sentence and keep every name, number and date." + _BODY
    ),
    "rewrite": (
        "Rewrite the passage below in your own words as short, separate sentences, one per "
        "line. Name the subject in every sentence and keep every name, number and date." + _BODY
    ),
    "qa": (
        "Write questions about the passage below together with their answers, one pair per "
        "line, in the form 'Question: ... Answer: ...'. Name the subject in every question." + _BODY
    ),
}

_BULLET = re.compile(r"^\s*(?:[-*•]+|\(?\d{1,2}[.)]|\d{1,2}\s*-)\s*")


class EmptySelfEditError(T2BenchError, ValueError):
    """A self-edit has no line that could be trained on."""


def selfedit_prompt(passage: Passage, variant: str = "implications") -> str:
    """The instruction that asks for a self-edit of ``passage`` (before any chat template)."""
    try:
        template = VARIANTS[variant]
    except KeyError:
        raise ConfigError(
            f"unknown self-edit variant {variant!r}: use one of {', '.join(VARIANTS)}"
        ) from None
    return template.format(title=passage.title, text=passage.text)


def parse_self_edit(text: str, *, max_lines: int = 16, min_chars: int = 12) -> list[str]:
    """Training lines of a generated self-edit: one per non-empty line, list markers removed,
    duplicates and fragments shorter than ``min_chars`` dropped, at most ``max_lines``.

    Raises :class:`EmptySelfEditError` when nothing usable is left.
    """
    lines: list[str] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        line = _BULLET.sub("", raw).strip()
        key = line.lower()
        if len(line) < min_chars or key in seen:
            continue
        seen.add(key)
        lines.append(line)
        if len(lines) == max_lines:
            break
    if not lines:
        shown = text.strip()[:80]
        raise EmptySelfEditError(
            f"the self-edit has no usable line (got {shown!r}): every line was empty, shorter "
            f"than {min_chars} characters or a repeat. Sample another self-edit (a new seed or "
            "a higher max_new_tokens) or train on the passage alone"
        )
    return lines


def training_sequences(
    passage: Passage, lines: list[str], *, include_passage: bool = True
) -> list[str]:
    """The inner update's documents: each self-edit line prefixed by the title, then the
    passage itself (SEAL trains on both)."""
    seqs = [f"{passage.title}\n{line}" for line in lines]
    if include_passage:
        seqs.append(f"{passage.title}\n{passage.text}")
    if not seqs:
        raise EmptySelfEditError(
            f"no training sequence for passage {passage.uid}: the self-edit is empty and "
            "include_passage is False"
        )
    return seqs


def sample_seed(seed: int, uid: str, index: int) -> int:
    """The sampling seed of self-edit ``index`` of passage ``uid`` (independent of batching)."""
    return zlib.crc32(f"seal:{seed}:{uid}:{index}".encode())


def generate_self_edits(
    model,
    tokenizer,
    passages: list[Passage],
    *,
    variant: str = "implications",
    k: int = 1,
    seed: int = 0,
    temperature: float = 1.0,
    max_new_tokens: int = 160,
    batch: int = 8,
) -> list[list[str]]:
    """``k`` self-edit texts per passage: sampled at ``temperature`` with per-sample seeds, or
    greedy when ``temperature`` is 0 (then ``k`` must be 1)."""
    from t2bench.generation import encode_prompts, generate

    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0 and k > 1:
        raise ConfigError("greedy self-edits (temperature 0) are identical: use k=1")
    jobs = [(p, j) for p in passages for j in range(k)]
    texts: list[str] = []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        ids = encode_prompts(tokenizer, [selfedit_prompt(p, variant) for p, _ in chunk])
        seeds = None if temperature == 0 else [sample_seed(seed, p.uid, j) for p, j in chunk]
        out = generate(
            model,
            tokenizer,
            ids,
            max_new_tokens=max_new_tokens,
            seeds=seeds,
            temperature=temperature or 1.0,
        )
        texts.extend(out.texts)
    return [texts[i * k : (i + 1) * k] for i in range(len(passages))]
