"""Minerva-style answer extraction and scoring for the MATH tasks (``minerva_math_*``).

Behaviour follows lm-eval 0.4.13's ``minerva_math`` task so scores are comparable:

* the model's answer is the text between ``Final Answer: The final answer is`` and
  ``. I hope it is correct.`` (``[invalidanswer]`` when absent);
* the gold answer is the last ``\\boxed{...}`` of the reference solution;
* both go through the Minerva normalisation (Lewkowycz et al. 2022, appendix D, with
  lm-eval's later fixes for unit words inside LaTeX commands, indexed roots and tuples);
* ``exact_match`` is 1 when the normalised strings are equal or, failing that, when sympy
  proves their difference is zero (5 s limit per comparison);
* ``math_verify`` uses the ``math_verify`` package on the full texts.

Environment differences, stated rather than hidden: upstream refuses to load without
``math_verify`` and ``antlr4-python3-runtime==4.11``. Here, when sympy's LaTeX parser is
unusable (e.g. another antlr4 version), the symbolic fallback is skipped with a warning,
so ``exact_match`` can only be lower than upstream's, for answers that are equal but
written differently; when ``math_verify`` is missing the ``math_verify`` metric is left out
with a warning. Install ``math_verify`` and ``antlr4-python3-runtime==4.11`` for full parity.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

__all__ = [
    "INVALID_ANSWER",
    "extract_final_answer",
    "gold_answer",
    "is_equiv",
    "last_boxed_only_string",
    "normalize_final_answer",
    "process_results",
    "remove_boxed",
]

log = logging.getLogger(__name__)

INVALID_ANSWER = "[invalidanswer]"
_END = "I hope it is correct."
_FINAL_RE = re.compile(r"Final Answer: The final answer is(.*?). I hope it is correct.")
_EQUIV_TIMEOUT_S = 5

# Minerva appendix D: literal replacements, then expressions deleted outright.
SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    (r"\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
)
REMOVED_EXPRESSIONS: tuple[str, ...] = (
    *("square ways integers dollars mph inches ft hours km units".split()),
    "\\ldots",
    *("sue points feet minutes digits cents degrees cm gm pounds meters meals edges".split()),
    *("students childrentickets multiples".split()),
    "\\text{s}",
    "\\text{.}",
    "\\text{\ns}",
    "\\text{}^2",
    "\\text{}^3",
    "\\text{\n}",
    "\\text{}",
    r"\mathrm{th}",
    r"^\circ",
    r"^{\circ}",
    r"\;",
    r",\!",
    "{,}",
    '"',
    "\\dots",
)
_LATEX_COMMAND = re.compile(r"(\\[a-zA-Z]+)")
_THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+")


# --------------------------------------------------------------------------- extraction


def last_boxed_only_string(text: str) -> str | None:
    """The last ``\\boxed{...}`` (or ``\\fbox{...}``) of ``text`` with its braces, or None.

    ``\\boxed 5``-style boxes (no braces) return ``"\\boxed "`` plus the text up to the
    next ``$``.
    """
    if "\\boxed " in text:
        return "\\boxed " + text.split("\\boxed ")[-1].split("$")[0]
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for pos in range(start, len(text)):
        char = text[pos]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start : pos + 1]
    return None


def remove_boxed(boxed: str) -> str:
    """Strip ``\\boxed{`` ... ``}`` (or the ``\\boxed `` prefix) from a boxed string."""
    if "\\boxed " in boxed:
        if not boxed.startswith("\\boxed "):
            raise ValueError(f"not a boxed answer: {boxed!r}")
        return boxed[len("\\boxed ") :]
    if not (boxed.startswith("\\boxed{") and boxed.endswith("}")):
        raise ValueError(f"not a boxed answer: {boxed!r}")
    return boxed[len("\\boxed{") : -1]


def extract_final_answer(generation: str) -> str:
    """The answer in ``Final Answer: The final answer is X. I hope it is correct.``"""
    match = _FINAL_RE.search(generation + _END)
    return match.group(1).strip() if match else INVALID_ANSWER


# --------------------------------------------------------------------------- normalisation


def _drop_outside_commands(text: str, word: str) -> str:
    """Delete ``word`` everywhere except inside LaTeX command names (``ft`` in ``\\left``)."""
    parts = _LATEX_COMMAND.split(text)  # odd indices are the commands themselves
    return "".join(p if i % 2 else p.replace(word, "") for i, p in enumerate(parts))


def normalize_final_answer(answer: str) -> str:
    """Minerva normalisation of a final answer string (see module docstring)."""
    text = answer.split("=")[-1]
    # Unit words first, while whitespace still separates them from the number.
    for expr in REMOVED_EXPRESSIONS:
        if expr.isalpha():
            text = re.sub(rf"(?<!\\)\b{expr}\b", "", text)
    for before, after in SUBSTITUTIONS:
        text = text.replace(before, after)
    for expr in REMOVED_EXPRESSIONS:
        text = _drop_outside_commands(text, expr) if expr.isalpha() else text.replace(expr, "")

    # Keep the inside of $...$, \text{}, \textbf{}, \overline{} and \boxed{}.
    text = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", text)
    for command in ("text", "textbf", "overline"):
        text = re.sub(rf"(\\{command}\{{)(.*?)(\}})", "\\2", text)
    text = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", text)

    # Shorthand TeX: \fracab -> \frac{a}{b}, \sqrt[3]a -> \sqrt[3]{a}, \sqrta -> \sqrt{a}.
    text = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", text)
    text = re.sub(r"(sqrt)(\[[^\]]*\])(\w)", "\\1\\2{\\3}", text)
    text = re.sub(r"(sqrt)(?!\[)([^{])", "sqrt{\\2}", text)
    text = text.replace("$", "")

    # 100,000 -> 100000, but leave tuples such as "0,1" alone.
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    return text


def gold_answer(solution: str) -> str:
    """Normalised gold answer of a MATH reference solution (upstream ``process_docs``)."""
    boxed = last_boxed_only_string(solution)
    if boxed is None:
        raise ValueError(f"MATH solution without a boxed answer: {solution[:80]!r}")
    return normalize_final_answer(remove_boxed(boxed))


# --------------------------------------------------------------------------- equivalence


@cache
def _latex_parser() -> Callable[[str], Any] | None:
    """sympy's ``parse_latex`` if it works in this environment, else None (warned once)."""
    try:
        from sympy.parsing.latex import parse_latex

        parse_latex("1")
    except Exception as exc:  # ImportError for a wrong antlr4 version, among others
        log.warning(
            "minerva_math: sympy LaTeX parsing unavailable (%s); exact_match compares "
            "normalised strings only (upstream also tries sympy). For parity install "
            "antlr4-python3-runtime==4.11.",
            exc,
        )
        return None
    return parse_latex


class _Timeout(Exception):
    pass


def _with_alarm(seconds: int, fn: Callable[[], bool]) -> bool:
    """Run ``fn`` under SIGALRM (main thread only; elsewhere without a limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        return fn()

    def _raise(signum, frame):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def is_equiv(a: str, b: str) -> bool:
    """True when two normalised answers are equal, or sympy shows they are equal."""
    if a and a == b:
        return True
    parse = _latex_parser()
    if parse is None:
        return False

    def _symbolic() -> bool:
        import sympy

        return sympy.simplify(parse(a) - parse(b)) == 0

    try:
        return bool(_with_alarm(_EQUIV_TIMEOUT_S, _symbolic))
    except _Timeout:
        log.debug("timed out comparing %r and %r", a, b)
    except Exception as exc:  # unparsable or incomparable expressions
        log.debug("could not compare %r and %r: %s", a, b, exc)
    return False


@cache
def _math_verify() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    try:
        from math_verify import parse, verify
    except ImportError:
        log.warning(
            "minerva_math: package math_verify not installed; the math_verify metric is "
            "omitted (pip install math-verify to report it)."
        )
        return None
    return parse, verify


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, int]:
    """lm-eval ``process_results``: ``exact_match`` and, if available, ``math_verify``."""
    generation = results[0]
    predicted = normalize_final_answer(extract_final_answer(generation))
    out = {"exact_match": int(is_equiv(predicted, doc["answer"]))}
    mv = _math_verify()
    if mv is not None:
        parse, verify = mv
        out["math_verify"] = int(
            bool(verify(gold=parse(doc["solution"]), target=parse(generation)))
        )
    return out
