"""The one classification prompt: which category (code, math, reasoning, other) a question is.

Every first pass that asks a model for a category (dispatch ``prompt``, ``classifier`` and
``label``) and the classifier expert's training split (:mod:`t2bench.data.splits`) build their
prompt here, so a comparison between those strategies differs only in the weights that read
it. This module imports nothing from t2bench, so both the training and the dispatch layers
can depend on it.
"""

from __future__ import annotations

import hashlib

#: The categories that have an expert; the classifier expert is trained on these targets.
EXPERT_LABELS = ("code", "math", "reasoning")
#: Every answer the question offers; ``other`` answers with the base weights.
LABELS = (*EXPERT_LABELS, "other")

# Our own wording of the paper's four-way, boxed-label classification. The question comes
# first and the instruction last: a 135M model follows an instruction it has just read far
# more often than one placed before a long question.
CLASSIFY_INSTRUCTION = (
    "Which category fits the question above: code (write a program), math (calculate or "
    "solve), reasoning (choose an answer using knowledge or common sense) or other? Reply with "
    "only the category inside \\boxed{}, for example \\boxed{math}."
)

_HEAD = "Question:\n"
_TAIL = f"\n\n---\n{CLASSIFY_INSTRUCTION}"

#: Identity of the prompt: sha256[:12] of its fixed text (what precedes and follows the
#: question). Recorded by each first-pass strategy's ``describe()`` and by the classifier
#: split's description, so a table can show that two runs asked the same question.
CLASSIFY_PROMPT_SHA256 = hashlib.sha256(f"{_HEAD}\0{_TAIL}".encode()).hexdigest()[:12]


def classify_prompt(question: str) -> str:
    """The classification prompt for ``question``."""
    return f"{_HEAD}{question}{_TAIL}"


def question_in(prompt: str) -> str | None:
    """The question of a prompt built by :func:`classify_prompt`, or None for any other text."""
    if prompt.startswith(_HEAD) and prompt.endswith(_TAIL) and len(prompt) >= len(_HEAD + _TAIL):
        return prompt[len(_HEAD) : len(prompt) - len(_TAIL)]
    return None
