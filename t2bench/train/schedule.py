"""What a training run reads at each step, as pure functions of the step and the seed: the
data order (seeded epoch permutations) and the learning-rate schedule. A resumed run therefore
reads exactly the batches, at exactly the rates, an uninterrupted one would."""

from __future__ import annotations

import functools
import math
import zlib

import torch

from t2bench.core.run import epoch_order


def batch_indices(step: int, n: int, global_batch: int, seed: int) -> list[int]:
    """Dataset indices of one step's global batch: seeded epoch permutations, read in order."""

    @functools.cache
    def permutation(epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:epoch:{epoch}".encode()))
        return torch.randperm(n, generator=gen)

    return epoch_order(step * global_batch, global_batch, n, permutation)


def cosine_lambda(warmup: int, total: int):
    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return fn
