"""The held-out comparison: paired statistics, run discovery and the table."""

from __future__ import annotations

import json

import pytest

from t2bench.train.heldout import discover, heldout_items, markdown, paired_difference


def test_paired_difference_counts_and_interval():
    base = [True, False, False, True, False, True]
    other = [True, True, True, True, False, False]
    r = paired_difference(base, other)
    assert r["n"] == 6 and r["wins"] == 2 and r["losses"] == 1
    assert r["diff"] == pytest.approx(1 / 6)
    assert r["ci_low"] < r["diff"] < r["ci_high"]
    assert r["method"] == "newcombe-paired-score" and r["p_method"] == "mcnemar-exact"
    assert r["p"] == r["mcnemar_p"] == pytest.approx(1.0)  # 2 vs 1 discordant pairs
    many = paired_difference([False] * 40, [True] * 30 + [False] * 10)
    assert many["p"] < 1e-6 and many["ci_low"] > 0.5
    with pytest.raises(ValueError, match="paired"):
        paired_difference([True], [True, False])


def test_paired_difference_is_not_zero_width_when_no_item_changed():
    # a t-interval over all-zero differences has no width and claims certainty from n = 8
    same = paired_difference([False] * 8, [False] * 8)
    assert same["diff"] == 0.0 and same["p"] == 1.0
    assert same["ci_low"] < 0.0 < same["ci_high"]


def test_heldout_items_come_from_the_test_split_only():
    from t2bench.train.data import load_splits

    items, desc = heldout_items("reasoning", 20, seed=0)
    splits = load_splits("reasoning")
    test_uids = {it.uid for it in splits.test}
    train_uids = {it.uid for it in splits.train} | {it.uid for it in splits.valid}
    assert len(items) == 20 and {it.uid for it in items} <= test_uids
    assert not {it.uid for it in items} & train_uids
    assert desc["split"] == "test" and desc["n"] == 20
    assert [it.uid for it in heldout_items("reasoning", 20, seed=0)[0]] == [it.uid for it in items]


def test_discover_orders_runs_after_the_base(tmp_path):
    for name, art in [
        ("math-lora-ntp", "math-lora-ntp"),
        ("math-svf-pg", "math-svf-pg.safetensors"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(
            json.dumps({"run": name, "artifact": f"{tmp_path}/{name}/{art}"})
        )
    found = discover("math", tmp_path)
    assert [v.name for v in found] == ["base", "math-svf-pg", "math-lora-ntp"]
    assert [v.kind for v in found] == ["base", "svf", "peft"]


def test_markdown_table_has_one_row_per_variant():
    payload = {
        "table": [
            {"variant": "base", "kind": "base", "accuracy": 0.5},
            {"variant": "x-svf-pg", "kind": "svf", "accuracy": 0.6}
            | paired_difference([True, False] * 5, [True, True] * 5),
        ],
        "item_uids": ["a"] * 10,
        "max_new_tokens": 8,
        "provenance": {"commit": "abc", "base_model": "m", "created_utc": "t", "wall_seconds": 1},
    }
    text = markdown("math", payload)
    assert "| base | 0.500 |" in text and "| x-svf-pg | 0.600 | +50.0 |" in text
