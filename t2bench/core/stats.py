"""The statistics every table, bench and paragraph uses.

- One accuracy: Wilson score interval (sensible at 0/n and n/n, unlike the normal one).
- A paired difference of two variants scored on the same items: for 0/1 scores Newcombe's
  score interval for paired proportions (his method 10) with McNemar's exact p; for graded
  scores a paired bootstrap. Neither is zero-width when no item changed: "no item changed in
  n" still leaves a difference of up to about 4/n unresolved.
- The minimum detectable difference of a design: the smallest true difference a two-sided
  5% test finds with 80% power at n items.

Kept free of torch and lm-eval so any table can use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

ALPHA = 0.05
POWER = 0.8

#: how a table built on this module computed its intervals (captions quote it)
METHODS_NOTE = (
    "95% CI of an accuracy: Wilson; of a difference: Newcombe's paired score interval, "
    "p = McNemar's exact test (a paired bootstrap for graded scores)."
)


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
    lo, hi = wilson(int(sum(scores)), n) if is_binary(scores) else bootstrap_mean(scores)
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


def is_binary(scores: Sequence[float]) -> bool:
    return all(s in (0, 1, 0.0, 1.0, True, False) for s in scores)


def mcnemar_exact_p(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p: a binomial test of the discordant pairs against 1/2."""
    m = wins + losses
    if m == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2**m
    return min(1.0, 2 * tail)


def newcombe_paired(
    base: Sequence[int], other: Sequence[int], z: float = 1.96
) -> tuple[float, float]:
    """Newcombe's (1998, method 10) score interval for p(other) − p(base) on paired 0/1 items."""
    a = sum(1 for x, y in zip(base, other, strict=True) if x and y)
    b = sum(1 for x, y in zip(base, other, strict=True) if y and not x)  # other right only
    c = sum(1 for x, y in zip(base, other, strict=True) if x and not y)  # base right only
    d = len(base) - a - b - c
    n = len(base)
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    den = (a + b) * (c + d) * (a + c) * (b + d)
    if den == 0:
        phi = 0.0
    else:
        num = a * d - b * c
        if num > 0:
            num = max(num - n / 2, 0.0)
        phi = num / math.sqrt(den)
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return (max(-1.0, diff - delta), min(1.0, diff + eps))


def paired_difference(
    base: Sequence[float],
    other: Sequence[float],
    iters: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Mean of other − base over paired items with a 95% CI and a two-sided p.

    0/1 scores: Newcombe's paired score interval and McNemar's exact p. Graded scores: paired
    bootstrap; where every item's difference is the same the bootstrap interval has no width,
    so it is widened by the Wilson bound on the share of items that could have changed.
    """
    if len(base) != len(other) or len(base) == 0:
        raise ValueError(f"need equally many paired scores, got {len(base)} and {len(other)}")
    if level != 0.95:
        raise ValueError("paired_difference gives 95% intervals only")
    if is_binary(base) and is_binary(other):
        x = [int(v) for v in base]
        y = [int(v) for v in other]
        wins = sum(1 for a, b in zip(x, y, strict=True) if b > a)
        losses = sum(1 for a, b in zip(x, y, strict=True) if b < a)
        lo, hi = newcombe_paired(x, y)
        return {
            "n": len(x),
            "diff": (sum(y) - sum(x)) / len(x),
            "ci_low": lo,
            "ci_high": hi,
            "level": level,
            "method": "newcombe-paired-score",
            "p": mcnemar_exact_p(wins, losses),
            "p_method": "mcnemar-exact",
            "wins": wins,
            "losses": losses,
        }
    out = paired_bootstrap(base, other, iters=iters, seed=seed, level=level)
    if out["ci_high"] - out["ci_low"] <= 0:
        half = wilson(0, out["n"])[1]
        out["ci_low"], out["ci_high"] = out["diff"] - half, out["diff"] + half
    out["method"] = "paired-bootstrap"
    out["p"] = out["p_bootstrap"]
    out["p_method"] = "bootstrap"
    return out


def clustered_difference(
    base: Sequence[float],
    other: Sequence[float],
    clusters: Sequence[object],
    iters: int = 10_000,
    seed: int = 0,
) -> dict:
    """Mean of other − base over paired items that come in clusters (the questions of one
    passage), with a 95% cluster-bootstrap interval: whole clusters are resampled, so items of
    one cluster that succeed or fail together do not pass for independent evidence. Where no
    item differs, the interval is widened by the Wilson bound on the share of clusters that
    could have changed (as :func:`paired_difference` does over items)."""
    if not len(base) == len(other) == len(clusters) or len(base) == 0:
        raise ValueError(
            f"need equally many paired scores and cluster ids, got {len(base)}, {len(other)} "
            f"and {len(clusters)}"
        )
    d = np.asarray(other, dtype=float) - np.asarray(base, dtype=float)
    names = list(dict.fromkeys(clusters))
    index = {c: i for i, c in enumerate(names)}
    g = np.array([index[c] for c in clusters])
    sums = np.bincount(g, weights=d, minlength=len(names))
    counts = np.bincount(g, minlength=len(names)).astype(float)
    pick = np.random.default_rng(seed).integers(0, len(names), size=(iters, len(names)))
    means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    lo, hi = (float(v) for v in np.quantile(means, [0.025, 0.975]))
    diff = float(d.mean())
    if hi - lo <= 0:
        half = wilson(0, len(names))[1]
        lo, hi = diff - half, diff + half
    p = min(1.0, 2 * min(float((means <= 0).mean()), float((means >= 0).mean())))
    return {
        "n": len(d),
        "clusters": len(names),
        "diff": diff,
        "ci_low": max(-1.0, lo),
        "ci_high": min(1.0, hi),
        "level": 0.95,
        "method": "cluster-bootstrap",
        "p": p,
        "p_method": "cluster-bootstrap",
        "wins": int((d > 0).sum()),
        "losses": int((d < 0).sum()),
        "bootstrap_iters": iters,
        "seed": seed,
    }


def design_effect(scores: Sequence[float], clusters: Sequence[object]) -> float:
    """Kish's design effect 1 + (m̄ − 1)·ρ of clustered scores: how many times more items a
    clustered sample needs than an independent one for the same precision. ρ is the one-way
    ANOVA intraclass correlation, clipped to [0, 1]; m̄ its weighted mean cluster size."""
    y = np.asarray(scores, dtype=float)
    names = list(dict.fromkeys(clusters))
    g = np.array([names.index(c) for c in clusters])
    k, n = len(names), len(y)
    if k < 2 or n <= k:
        return 1.0
    size = np.bincount(g, minlength=k).astype(float)
    means = np.bincount(g, weights=y, minlength=k) / size
    msb = float((size * (means - y.mean()) ** 2).sum() / (k - 1))
    msw = float(((y - means[g]) ** 2).sum() / (n - k))
    m0 = (n - float((size**2).sum()) / n) / (k - 1)
    den = msb + (m0 - 1) * msw
    rho = 0.0 if den <= 0 else min(1.0, max(0.0, (msb - msw) / den))
    return 1.0 + (m0 - 1) * rho


def minimum_detectable_difference(
    n: int, p_base: float, alpha: float = ALPHA, power: float = POWER
) -> float:
    """Smallest improvement over a base accuracy ``p_base`` that a two-sided test at ``alpha``
    detects with ``power`` when two variants are each scored on ``n`` items, assuming their
    errors are independent (pairing on the same items can only help, so this is conservative).

    Solves δ = (z_{1−α/2} + z_power)·sqrt((p(1−p) + q(1−q)) / n), q = p + δ (or p − δ where
    p + δ would pass 1), by fixed-point iteration.
    """
    if n <= 0:
        return float("nan")
    zs = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    p = min(max(float(p_base), 0.0), 1.0)
    sign = 1.0 if p <= 0.5 else -1.0
    delta = zs * math.sqrt(0.5 / n)
    for _ in range(100):
        q = min(max(p + sign * delta, 0.0), 1.0)
        new = zs * math.sqrt((p * (1 - p) + q * (1 - q)) / n)
        if abs(new - delta) < 1e-9:
            break
        delta = new
    return float(delta)


def power_record(label: str, n: int, p_base: float) -> dict:
    """What a table states about its power for one task: n, base accuracy and the MDD."""
    return {
        "label": label,
        "n": int(n),
        "p_base": float(p_base),
        "mdd": minimum_detectable_difference(n, p_base),
        "alpha": ALPHA,
        "power": POWER,
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
