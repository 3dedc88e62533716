"""The cross-entropy method over a box: pure optimisation, no model, no lm-eval.

Each iteration samples a population from N(mean, std²) clipped to [low, high], scores every
sample, and refits mean and std to the elite fraction. An optional ``project`` maps every
clipped sample (and the start) onto a constraint set before it is scored, so the search, the
elite refit and the result all live on that set; ``normalise_columns`` is the projection onto
the probability simplex used for mixing weights. Fitness values are tuples compared
lexicographically (accuracy first, then a tie-break such as the mean log-likelihood). The
starting mean is scored too, and the best sample ever seen is returned, so CEM never ends
below its starting point on the fitness it optimises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from t2bench.errors import ConfigError

Fitness = tuple[float, ...]


@dataclass
class CEMConfig:
    population: int = 8
    elite_ratio: float = 0.25
    iterations: int = 4
    init_std: float = 0.5
    low: float = 0.0
    high: float = 1.0
    min_std: float = 1e-3
    seed: int = 0

    def check(self) -> None:

        if self.population < 2 or self.iterations < 1:
            raise ConfigError("CEM needs population >= 2 and iterations >= 1")
        if not 0 < self.elite_ratio <= 1:
            raise ConfigError(f"elite_ratio must be in (0, 1], got {self.elite_ratio}")
        if not self.low < self.high:
            raise ConfigError(f"CEM bounds need low < high, got [{self.low}, {self.high}]")

    @property
    def elites(self) -> int:
        return max(1, math.ceil(self.elite_ratio * self.population))


@dataclass
class CEMResult:
    best: np.ndarray
    best_fitness: Fitness
    start_fitness: Fitness
    evaluations: int
    history: list[dict] = field(default_factory=list)


def normalise_columns(x: np.ndarray, rows: int) -> np.ndarray:
    """``x`` read as a (rows, -1) matrix with every column divided by its sum, flattened back.

    Meant for non-negative weights: each column then lies on the probability simplex. A column
    whose sum is not positive (all weights clipped to zero) has no direction to keep, so it
    becomes uniform, 1/rows each.
    """
    m = np.asarray(x, dtype=np.float64).reshape(rows, -1)
    sums = m.sum(axis=0)
    ok = sums > 0
    out = np.full_like(m, 1.0 / rows)
    out[:, ok] = m[:, ok] / sums[ok]
    return out.reshape(-1)


def cem(
    fitness: Callable[[np.ndarray], Fitness],
    init_mean: np.ndarray,
    config: CEMConfig,
    *,
    project: Callable[[np.ndarray], np.ndarray] | None = None,
    on_iteration: Callable[[dict], None] | None = None,
) -> CEMResult:
    """Maximise ``fitness`` from ``init_mean``; identical clipped samples are scored once.

    ``project``, when given, is applied to the clipped start and to every clipped sample
    before scoring; the elites are refitted from the projected samples.
    """
    config.check()
    rng = np.random.default_rng(config.seed)

    def constrain(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, config.low, config.high)
        return x if project is None else np.asarray(project(x), dtype=np.float64)

    mean = constrain(np.asarray(init_mean, dtype=np.float64))
    std = np.full_like(mean, config.init_std)
    seen: dict[bytes, Fitness] = {}

    def score(x: np.ndarray) -> Fitness:
        key = np.round(x, 6).tobytes()
        if key not in seen:
            seen[key] = tuple(float(v) for v in fitness(x))
        return seen[key]

    start = score(mean)
    best, best_fit = mean.copy(), start
    history = [{"iteration": 0, "best": list(best_fit), "mean": mean.tolist()}]
    for it in range(1, config.iterations + 1):
        raw = rng.normal(mean, std, size=(config.population, mean.size))
        samples = np.stack([constrain(r) for r in raw])
        fits = [score(s) for s in samples]
        order = sorted(range(len(fits)), key=lambda i: fits[i], reverse=True)
        elite = samples[order[: config.elites]]
        if fits[order[0]] > best_fit:
            best, best_fit = samples[order[0]].copy(), fits[order[0]]
        mean = elite.mean(axis=0)
        std = np.maximum(elite.std(axis=0), config.min_std)
        record = {
            "iteration": it,
            "best": list(best_fit),
            "population_best": list(fits[order[0]]),
            "population_mean": [float(np.mean([f[j] for f in fits])) for j in range(len(start))],
            "mean": mean.tolist(),
            "std_mean": float(std.mean()),
        }
        history.append(record)
        if on_iteration:
            on_iteration(record)
    return CEMResult(best, best_fit, start, len(seen), history)
