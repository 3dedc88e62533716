"""Training pools that are disjoint from the evaluation test sets (ARC only for now).

Adapting a model (e.g. training an SVF expert) on items that are later used for evaluation
would inflate scores. The ``arc_easy`` / ``arc_challenge`` tasks evaluate on the ARC *test*
splits, and no ARC train split is packaged, so the training pool is the ARC *validation*
split (ARC-Easy: 570 items, ARC-Challenge: 299).

Disjointness is checked by question text (case- and whitespace-insensitive) against the test
splits of *both* ARC subsets, since a model adapted on one subset is often evaluated on the
other. ARC-Easy validation is disjoint from both. Two ARC-Challenge validation questions
("Which statement is an opinion?" and a kangaroo-cooling question) also occur, with other
answer choices, in the ARC-Challenge test split; :func:`arc_train_pool` refuses that subset
unless ``drop_overlap=True``, which removes them (297 items left).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from t2bench.tasks.arc import SUBSETS, load_arc_test, load_arc_validation

if TYPE_CHECKING:
    import datasets

__all__ = ["LeakageError", "arc_test_questions", "arc_train_pool", "normalize_question"]


class LeakageError(ValueError):
    """A training pool shares items with an evaluation test set."""


def normalize_question(text: str) -> str:
    """Lower-case and collapse whitespace: the key used for overlap checks."""
    return re.sub(r"\s+", " ", text).strip().lower()


def arc_test_questions(subsets: Iterable[str] = tuple(SUBSETS)) -> set[str]:
    """Normalised question texts of the ARC test splits of ``subsets``."""
    return {normalize_question(q) for s in subsets for q in load_arc_test(s)["question"]}


def arc_train_pool(subset: str = "ARC-Easy", *, drop_overlap: bool = False) -> datasets.Dataset:
    """The validation split of ``subset`` as a training pool, disjoint from all ARC tests.

    Raises :class:`LeakageError` when some question also appears in an ARC test split,
    unless ``drop_overlap`` is set, in which case those items are removed. The result is
    always re-checked before it is returned.
    """
    pool = load_arc_validation(subset)
    test = arc_test_questions()
    overlap = [i for i, q in enumerate(pool["question"]) if normalize_question(q) in test]
    if overlap and not drop_overlap:
        raise LeakageError(
            f"{len(overlap)} {subset} validation question(s) also appear in an ARC test split "
            f"(ids {[pool[i]['id'] for i in overlap]}); pass drop_overlap=True to remove them"
        )
    if overlap:
        bad = set(overlap)
        pool = pool.select([i for i in range(len(pool)) if i not in bad])
    leaked = {normalize_question(q) for q in pool["question"]} & test
    if leaked:  # cannot happen after the filtering above; kept as the documented guarantee
        raise LeakageError(f"{subset} training pool overlaps the ARC test sets: {sorted(leaked)}")
    return pool
