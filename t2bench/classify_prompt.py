"""The one classification prompt: which category (code, math, reasoning, other) a question is.

Every first pass that asks a model for a category (dispatch ``prompt``, ``classifier`` and
``label``) and the classifier expert's training split (:mod:`t2bench.data.splits`) build their
prompt here, so a comparison between those strategies differs only in the weights that read
it. This module imports nothing from t2bench, so both the training and the dispatch layers
can depend on it.

The prompt has three layouts, the same instruction in each:

* ``question-first`` (default): the question, then the instruction, which must then be re-read
  for every question; a first pass reuses only the chat template's opening and ``Question:``.
* ``instruction-first``: instruction, then the question. Everything before the question is the
  same for every prompt, so a first pass encodes it once and reuses its keys and values; per
  question it reads only the question and the reply cue.
* ``sandwich``: as ``instruction-first``, plus a one-line reminder after the question.

Why question-first stays the default (``results/bench/first-pass-cost-20261206T*.md``, the
Table 3 documents): the other two cost 36-50% instead of 82-93% of the second pass on
ARC-Challenge, but on MATH's few-shot contexts the 135M model no longer follows an instruction
read ~400 tokens earlier: the prompt strategy routed 14 of 20 MATH documents right with
question-first and 0 with either other layout. ``label`` routes better with ``sandwich``
overall (45 vs 28 of 92 documents), worse on MATH (9 vs 20 of 20): choose it per run with
``dispatch=label:layout=sandwich``.
"""

from __future__ import annotations

import hashlib

#: The categories that have an expert; the classifier expert is trained on these targets.
EXPERT_LABELS = ("code", "math", "reasoning")
#: Every answer the question offers; ``other`` answers with the base weights.
LABELS = (*EXPERT_LABELS, "other")

_INSTRUCTION = (
    "Which category fits the question {where}: code (write a program), math (calculate or "
    "solve), reasoning (choose an answer using knowledge or common sense) or other? Reply with "
    "only the category inside \\boxed{{}}, for example \\boxed{{math}}."
)
#: The question-first layout's instruction (it refers to the question above it).
CLASSIFY_INSTRUCTION = _INSTRUCTION.format(where="above")

_BELOW = f"{_INSTRUCTION.format(where='below')}\n\n---\nQuestion:\n"
#: a one-line reminder after the question: the instruction is then also the last thing read
_REMINDER = (
    "\n\n---\nReply with the category of the question above (code, math, reasoning or other) in "
    "\\boxed{}."
)

#: layout → (text before the question, text after it)
LAYOUTS: dict[str, tuple[str, str]] = {
    "sandwich": (_BELOW, _REMINDER),
    "instruction-first": (_BELOW, ""),
    "question-first": ("Question:\n", f"\n\n---\n{CLASSIFY_INSTRUCTION}"),
}
DEFAULT_LAYOUT = "question-first"


def _parts(layout: str) -> tuple[str, str]:
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ValueError(
            f"unknown classification prompt layout {layout!r}; choose one of {', '.join(LAYOUTS)}"
        ) from None


def prompt_sha256(layout: str = DEFAULT_LAYOUT) -> str:
    """Identity of a layout's prompt: sha256[:12] of its fixed text (what precedes and follows
    the question). Recorded by each first-pass strategy's ``describe()`` and by the classifier
    split's description, so a table can show that two runs asked the same question."""
    head, tail = _parts(layout)
    return hashlib.sha256(f"{head}\0{tail}".encode()).hexdigest()[:12]


#: Identity of the default layout's prompt (see :func:`prompt_sha256`).
CLASSIFY_PROMPT_SHA256 = prompt_sha256()


def classify_prompt(question: str, layout: str = DEFAULT_LAYOUT) -> str:
    """The classification prompt for ``question``."""
    head, tail = _parts(layout)
    return f"{head}{question}{tail}"


def question_in(prompt: str) -> str | None:
    """The question of a prompt built by :func:`classify_prompt` (either layout), or None."""
    for head, tail in LAYOUTS.values():
        if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head + tail):
            return prompt[len(head) : len(prompt) - len(tail)]
    return None
