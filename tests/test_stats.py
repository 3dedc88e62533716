"""The one statistics module: intervals that never claim certainty a small n cannot give,
and the minimum detectable difference every table states."""

from __future__ import annotations

import numpy as np
import pytest

from t2bench.core.stats import (
    mcnemar_exact_p,
    minimum_detectable_difference,
    paired_difference,
    power_record,
    wilson,
)


def test_no_item_changed_is_not_a_zero_width_interval():
    # 0/8 right under both variants: the old Wald interval was [0, 0] and the bootstrap
    # difference "+0.0 [+0.0, +0.0]"; 8 items cannot rule out a difference of tens of points
    d = paired_difference([0] * 8, [0] * 8)
    assert d["diff"] == 0
    assert d["ci_low"] < -0.2 and d["ci_high"] > 0.2
    assert d["p"] == 1.0
    lo, hi = wilson(0, 8)
    assert lo == 0 and hi > 0.25


def test_identical_mixed_scores_still_leave_an_interval():
    scores = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
    d = paired_difference(scores, list(scores))
    assert d["ci_low"] < 0 < d["ci_high"]
    assert d["wins"] == d["losses"] == 0


def test_graded_scores_with_no_change_are_widened():
    base = [0.3, 0.6, 1.0, 0.0]
    d = paired_difference(base, list(base))
    assert d["method"] == "paired-bootstrap"
    assert d["ci_low"] < 0 < d["ci_high"]


def test_paired_interval_excludes_zero_for_a_clear_gain():
    base = [0] * 60 + [1] * 40
    other = [1] * 30 + [0] * 30 + [1] * 40  # 30 items fixed, none broken
    d = paired_difference(base, other)
    assert d["diff"] == pytest.approx(0.3)
    assert 0 < d["ci_low"] < 0.3 < d["ci_high"]
    assert d["p"] < 1e-6
    assert (d["wins"], d["losses"]) == (30, 0)


def test_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    # simulated paired 0/1 scores, n = 40, true difference +0.1 with correlated errors
    rng = np.random.default_rng(7)
    cells = [0.45, 0.15, 0.05, 0.35]  # both right, other only, base only, neither
    covered, trials = 0, 1500
    for _ in range(trials):
        kind = rng.choice(4, size=40, p=cells)
        base = [int(k in (0, 2)) for k in kind]
        other = [int(k in (0, 1)) for k in kind]
        d = paired_difference(base, other)
        covered += d["ci_low"] <= 0.1 <= d["ci_high"]
    assert 0.92 <= covered / trials <= 0.99


def test_mcnemar_exact():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(3, 3) == 1.0


def test_minimum_detectable_difference_shrinks_with_n_and_is_never_zero():
    small = minimum_detectable_difference(60, 0.3)
    large = minimum_detectable_difference(1172, 0.3)
    assert small > large > 0
    assert minimum_detectable_difference(300, 0.0) > 0
    # about 2.8 * sqrt(2 * 0.25 / n) near p = 0.5
    assert minimum_detectable_difference(2376, 0.5) == pytest.approx(0.0406, abs=2e-3)
    rec = power_record("arc", 100, 0.5)
    assert rec["n"] == 100 and rec["mdd"] > 0.15


def test_clustered_interval_is_wider_than_the_items_when_clusters_move_together():
    from t2bench.core.stats import clustered_difference

    clusters = [c for c in range(20) for _ in range(5)]  # 20 passages x 5 questions
    base = [0] * 100
    other = [1 if c < 6 else 0 for c in clusters]  # whole passages flip: +30 points
    flat = paired_difference(base, other)
    grouped = clustered_difference(base, other, clusters)
    assert grouped["diff"] == flat["diff"] == 0.3 and grouped["clusters"] == 20
    assert grouped["ci_high"] - grouped["ci_low"] > flat["ci_high"] - flat["ci_low"]
    # no item differs: still an interval, from the share of clusters that could have changed
    same = clustered_difference(base, base, clusters)
    assert same["ci_low"] < 0 < same["ci_high"]
    with pytest.raises(ValueError, match="cluster ids"):
        clustered_difference(base, other, clusters[:-1])


def test_design_effect_is_the_cluster_size_for_identical_clusters_and_one_for_none():
    from t2bench.core.stats import design_effect

    clusters = [c for c in range(10) for _ in range(4)]
    homogeneous = [c % 2 for c in clusters]  # every question of a passage scores alike
    assert design_effect(homogeneous, clusters) == pytest.approx(4.0)
    alternating = [i % 2 for i in range(40)]  # within-passage variation only
    assert design_effect(alternating, clusters) == pytest.approx(1.0)
    assert design_effect([1, 0, 1], ["a", "b", "c"]) == 1.0  # one question per passage
