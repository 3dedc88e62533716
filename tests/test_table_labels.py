"""Tables name the split they score from the data itself (issue #18: Tables 1 and 4 labelled
the generated arithmetic test items "GSM8K")."""

from __future__ import annotations

from t2bench.ablations.table1_training import row, split_name
from t2bench.train.heldout import heldout_items


def _scored(task: str) -> tuple[dict, list]:
    items, split = heldout_items(task, 4, seed=0)
    rec = {"scores": [1, 0, 1, 0], "split": split, "uids": [it.uid for it in items]}
    return row(task, "base", rec, None, 100, 0), items


def test_math_rows_name_the_generated_arithmetic_split_not_gsm8k():
    r, items = _scored("math")
    assert all(it.uid.startswith("arith-test-") for it in items)
    assert "GSM8K" not in r["scored split"] and "gsm8k" not in r["scored split"].lower()
    assert "arithmetic" in r["scored split"] and r["task"] == "math"


def test_reasoning_rows_name_arc_easy_test():
    r, items = _scored("reasoning")
    assert all(it.uid.startswith("arc-easy-test-") for it in items)
    assert r["scored split"] == "ARC-Easy test"


def test_a_record_without_a_split_says_so():
    assert split_name({"scores": []}) == "unknown source [test]"
