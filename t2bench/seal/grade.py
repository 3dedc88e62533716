"""Deterministic grading of closed-book answers (SEAL's offline stand-in for an LLM judge).

Answers are compared after SQuAD-official normalisation (:func:`normalize`): lower case, no
punctuation, no articles, single spaces. Three grades are computed against every reference
answer of a question and the best one is kept:

``contains``
    a normalised reference occurs in the normalised prediction as a whole-token sequence
    ("july 1899" is found in "in july 1899 he", "23" is not found in "1234"). This is the reward:
    a short answer followed by a few extra words still counts.
``em``
    SQuAD exact match of the normalised strings.
``f1``
    SQuAD token F1 (bag-of-tokens precision and recall).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

from t2bench.errors import ConfigError

__all__ = ["clean_answer", "contains", "exact_match", "f1", "grade", "normalize", "tokens"]

# Typographic quotes and dashes that NFKC leaves alone, mapped to their ASCII forms (which
# string.punctuation then removes).
_TYPOGRAPHY = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u2212": "-",
    }
)
_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ANSWER_PREFIX = re.compile(r"^(?:answer|a)\s*:\s*", re.I)


def normalize(text: str) -> str:
    """SQuAD normalisation after NFKC: lower case, drop punctuation and articles, one space.

    Punctuation is deleted, not replaced by a space (as in the official SQuAD script), so
    "Harvard-Yale" becomes "harvardyale" on both sides of a comparison. Unicode punctuation
    (curly quotes, dashes, guillemets, ...) is removed like its ASCII counterpart.
    """
    text = unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHY).lower()
    text = "".join(
        ch for ch in text if ch not in _PUNCT and not unicodedata.category(ch).startswith("P")
    )
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    """Whitespace tokens of :func:`normalize` (``text``)."""
    return normalize(text).split()


def _references(answers: Sequence[str] | str) -> list[str]:
    """The reference answers as a list; a lone string is one answer."""
    refs = [answers] if isinstance(answers, str) else list(answers)
    if not refs:
        raise ConfigError(
            "no reference answers given: a question needs at least one reference answer to be "
            "graded; fix the data so every question lists its answers"
        )
    return refs


def _contains_tokens(haystack: list[str], needle: list[str]) -> bool:
    width = len(needle)
    return any(haystack[i : i + width] == needle for i in range(len(haystack) - width + 1))


def contains(prediction: str, answers: Sequence[str] | str) -> bool:
    """True if a non-empty normalised answer occurs in the prediction as whole tokens."""
    pred = tokens(prediction)
    return any(_contains_tokens(pred, ref) for ref in map(tokens, _references(answers)) if ref)


def exact_match(prediction: str, answers: Sequence[str] | str) -> bool:
    """True if the normalised prediction equals a normalised answer."""
    pred = normalize(prediction)
    return any(pred == normalize(ref) for ref in _references(answers))


def _f1(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, answers: Sequence[str] | str) -> float:
    """SQuAD token F1, best over answers (1.0 when both sides normalise to nothing)."""
    pred = tokens(prediction)
    return max(_f1(pred, tokens(ref)) for ref in _references(answers))


def grade(prediction: str, answers: Sequence[str] | str) -> dict[str, bool | float]:
    """All grades of one prediction: ``{"contains": bool, "em": bool, "f1": float}``."""
    refs = _references(answers)
    return {
        "contains": contains(prediction, refs),
        "em": exact_match(prediction, refs),
        "f1": f1(prediction, refs),
    }


def clean_answer(generation: str) -> str:
    """The answer in a generation: its first non-empty line, stripped, without "Answer:"/"A:".

    A line that holds only the prefix (``"Answer:\\nParis"``) is skipped; a generation with no
    text gives ``""``.
    """
    for line in generation.splitlines():
        answer = _ANSWER_PREFIX.sub("", line.strip()).strip()
        if answer:
            return answer
    return ""
