"""Confidence intervals for small-sample results: Wilson for one accuracy, a paired bootstrap for
the difference of two variants scored on the same items.

Kept free of torch and lm-eval so any table can use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (sensible at 0 and at n, unlike the normal one)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = correct / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy(scores: Sequence[float]) -> dict:
    """Mean score, n and a 95% interval (Wilson when the scores are 0/1)."""
    n = len(scores)
    mean = float(np.mean(scores)) if n else float("nan")
    binary = all(s in (0, 1, 0.0, 1.0, True, False) for s in scores)
    lo, hi = wilson(int(sum(scores)), n) if binary else bootstrap_mean(scores)
    return {"n": n, "score": mean, "ci_low": lo, "ci_high": hi}


def bootstrap_mean(
    scores: Sequence[float], iters: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean."""
    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, x.size, size=(iters, x.size))
    means = x[idx].mean(axis=1)
    return tuple(float(v) for v in np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


def paired_bootstrap(
    base: Sequence[float],
    other: Sequence[float],
    iters: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Mean of other − base over paired items with a percentile bootstrap CI (items resampled
    together), and a two-sided bootstrap p-value for "no difference"."""
    a = np.asarray(base, dtype=float)
    b = np.asarray(other, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need equally many paired scores, got {a.size} and {b.size}")
    d = b - a
    idx = np.random.default_rng(seed).integers(0, d.size, size=(iters, d.size))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    # p: how often a resampled mean lands on the other side of zero, doubled (capped at 1)
    if np.all(d == 0):
        p = 1.0
    else:
        p = float(min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0))))
    return {
        "n": int(d.size),
        "diff": float(d.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "level": level,
        "p_bootstrap": p,
        "wins": int(np.sum(d > 0)),
        "losses": int(np.sum(d < 0)),
        "bootstrap_iters": iters,
        "seed": seed,
    }


def verdict(diff: dict, claim_sign: int = 1) -> str:
    """How a paired difference bears on a claim that it is positive (claim_sign=1) or negative.

    'supports' / 'contradicts' need the whole CI on one side of zero; otherwise 'inconclusive'.
    """
    lo, hi = diff["ci_low"] * claim_sign, diff["ci_high"] * claim_sign
    if claim_sign < 0:
        lo, hi = hi, lo
    if lo > 0:
        return "supports"
    if hi < 0:
        return "contradicts"
    return "inconclusive"
