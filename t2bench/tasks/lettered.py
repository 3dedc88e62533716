"""Table 2's multiple-choice tasks scored by generation, for "format vs knowledge".

The lm-eval tasks ``sciq``, ``t2_basic_arithmetic`` and ``t2_basic_coding`` rank each
document's choices by log-likelihood. Their ``*_gen`` twins (``tasks/*_gen.yaml``) take the
same documents in the same order (so lm-eval's doc ids match), letter the choices in the prompt
("A. ...", "B. ...") and score the letter a greedy completion names, as the reasoning expert's
training prompts ask for it. An expert that learnt the answer format gains here and not on the
log-likelihood task; one that learnt the task gains on both.

SciQ lists the correct answer last in every row, so its choices are put in an order fixed by
the document's id (sha256), the same in every run. The basic-skills documents keep oe-eval's
order and drop the 5-shot context, whose shots answer with a value, not a letter.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from t2bench.tasks.unseen import basic_skill_docs, load_sciq

if TYPE_CHECKING:
    import datasets

#: log-likelihood task -> (its generation twin, the split both evaluate)
TWINS = {
    "sciq": ("sciq_gen", "validation"),
    "t2_basic_arithmetic": ("t2_basic_arithmetic_gen", "test"),
    "t2_basic_coding": ("t2_basic_coding_gen", "test"),
}
SOURCES = tuple(TWINS)


def letter(i: int) -> str:
    return chr(ord("A") + i)


def fixed_order(key: str, n: int) -> list[int]:
    """A permutation of range(n) that depends only on ``key`` (sha256-ranked)."""
    rank = {i: hashlib.sha256(f"{key}|{i}".encode()).hexdigest() for i in range(n)}
    return sorted(range(n), key=rank.__getitem__)


def _doc(doc_id: str, stem: str, choices: list[str], gold: int) -> dict[str, Any]:
    return {
        "id": doc_id,
        "stem": stem,
        "choices": choices,
        "gold": gold,
        "gold_letter": letter(gold),
    }


def sciq_docs() -> list[dict[str, Any]]:
    rows = load_sciq()["validation"]
    out = []
    for i, r in enumerate(rows):
        original = [r["distractor1"], r["distractor2"], r["distractor3"], r["correct_answer"]]
        order = fixed_order(f"sciq-{i}-{r['question']}", len(original))
        support = r["support"].strip()
        stem = (f"{support}\n" if support else "") + f"Question: {r['question']}"
        out.append(_doc(f"sciq-{i}", stem, [original[j] for j in order], order.index(3)))
    return out


def skill_docs(skill: str) -> list[dict[str, Any]]:
    return [
        _doc(f"{skill}-{d['id']}", d["question"], d["choices"], d["gold"])
        for d in basic_skill_docs(skill)
    ]


def lettered_docs(source: str) -> list[dict[str, Any]]:
    """The documents of log-likelihood task ``source`` (:data:`SOURCES`), in its order."""
    if source == "sciq":
        return sciq_docs()
    if source.startswith("t2_basic_"):
        return skill_docs(source.removeprefix("t2_basic_"))
    raise ValueError(f"no lettered twin of task {source!r}; expected one of {SOURCES}")


def load_lettered(source: str) -> datasets.DatasetDict:
    """``DatasetDict`` with the split ``source`` evaluates (:data:`TWINS`)."""
    import datasets

    split = TWINS[source][1]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(lettered_docs(source))})
