"""Category labels: which expert answers each, the classification prompt and its parser.

The paper's four categories are code, math, reasoning and other; ``other`` (and anything the
parser cannot read) answers with the base weights. An expert serves a label when its training
task (``provenance.train_config.task``) is that label, or when its name is the label or starts
with ``<label>-`` / ``<label>_``. The labels and the prompt are defined in
:mod:`t2bench.classify_prompt` (shared with the classifier expert's training data) and
re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from t2bench.classify_prompt import (
    CLASSIFY_INSTRUCTION,
    CLASSIFY_PROMPT_SHA256,
    EXPERT_LABELS,
    LABELS,
    classify_prompt,
)
from t2bench.dispatch.base import BASE, Choice
from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert, expert_task, serves

__all__ = [
    "CLASSIFY_INSTRUCTION",
    "CLASSIFY_PROMPT_SHA256",
    "EXPERT_LABELS",
    "LABELS",
    "SYNONYMS",
    "choice_for",
    "classify_prompt",
    "expert_task",
    "boxed_label",
    "label_experts",
    "parse_label",
    "question_of",
    "serves",
]


def label_experts(
    experts: Mapping[str, Expert], labels: Sequence[str] = EXPERT_LABELS, *, strategy: str
) -> dict[str, Expert]:
    """The expert serving each label; an error names a label with none or with several."""
    if not experts:
        raise ConfigError(
            f"dispatch={strategy} routes to experts but none are loaded: pass experts=<folder or "
            f"files> with one expert per label ({', '.join(labels)})"
        )
    out: dict[str, Expert] = {}
    for label in labels:
        found = [e for e in experts.values() if serves(e, label)]
        if not found:
            raise ConfigError(
                f"dispatch={strategy}: no expert serves label {label!r} among {sorted(experts)}: "
                f"add an expert trained on task {label!r} or named '{label}-…'"
            )
        if len(found) > 1:
            raise ConfigError(
                f"dispatch={strategy}: several experts serve label {label!r}: "
                f"{sorted(e.meta.name for e in found)}; load only one of them"
            )
        out[label] = found[0]
    return out


def choice_for(label: str | None, mapping: Mapping[str, Expert]) -> Choice:
    """The expert for a label; ``other``, unknown labels and None → the base weights."""
    expert = mapping.get(label) if label else None
    return Choice(expert.meta.name, expert) if expert is not None else BASE


def question_of(text: str, max_chars: int) -> str:
    """The tail of an lm-eval context (its last question sits at the end)."""
    text = text.strip()
    return text if max_chars <= 0 or len(text) <= max_chars else "…" + text[-max_chars:]


_BOXED = re.compile(r"\\boxed\s*\{\s*([^{}]*?)\s*\}")
_WORD = re.compile(r"[a-z]+")


def parse_label(text: str, labels: Sequence[str] = LABELS) -> str | None:
    """The label of a classification reply, or None when it cannot be read.

    The last ``\\boxed{…}`` that names a label wins (``\\text{}``, case and punctuation
    ignored; synonyms such as ``Coding`` or ``mathematics`` count); without one, a reply naming
    exactly one label does.
    """
    hit = boxed_label(text, labels)
    if hit:
        return hit
    words = set(_WORD.findall(text.lower()))
    named = [label for label in labels if words & {label, *SYNONYMS.get(label, ())}]
    return named[0] if len(named) == 1 else None


def boxed_label(text: str, labels: Sequence[str] = LABELS) -> str | None:
    """The label named by the last closed ``\\boxed{…}`` that names one, else None."""
    boxed = _BOXED.findall(text.replace("\\text{", "").replace("\\textbf{", ""))
    for candidate in reversed(boxed):
        hit = _match(_WORD.findall(candidate.lower()), labels)
        if hit:
            return hit
    return None


SYNONYMS = {
    "code": ("code", "coding", "programming", "program", "python"),
    "math": ("math", "maths", "mathematics", "mathematical", "arithmetic"),
    "reasoning": ("reasoning", "reason", "logic", "science"),
    "other": ("other", "none"),
}


def _match(words: list[str], labels: Sequence[str]) -> str | None:
    for w in words:
        for label in labels:
            if w == label or w in SYNONYMS.get(label, ()):
                return label
    return None
