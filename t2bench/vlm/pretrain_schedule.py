"""What vision pre-training reads at each step, as pure functions of ``(seed, stage, step)``: the
learning-rate factor (linear warm-up over ``WARMUP_FRACTION`` of the steps, then cosine decay to
``MIN_LR_FRACTION`` of the peak) and the batch's train indices (seeded epoch permutations), so a
resumed run ends with the same weights as an uninterrupted one."""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import torch

from t2bench.core.run import epoch_order

WARMUP_FRACTION = 0.05
MIN_LR_FRACTION = 0.1


def lr_factor(step: int, total: int) -> float:
    """Multiplier of the peak learning rate for (1-based) ``step`` of ``total``."""
    warmup = max(1, round(WARMUP_FRACTION * total))
    if step <= warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


@lru_cache(maxsize=8)
def _permutation(seed: int, stage: str, epoch: int, n: int) -> tuple[int, ...]:
    key = hashlib.sha256(f"t2bench-vlm-pretrain:{seed}:{stage}:{epoch}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & (2**63 - 1))
    return tuple(torch.randperm(n, generator=g).tolist())


def batch_indices(seed: int, stage: str, step: int, batch: int, n: int) -> list[int]:
    """Train indices of (1-based) ``step``: epoch-wise seeded permutations, a pure function."""
    return epoch_order(
        (step - 1) * batch, batch, n, lambda epoch: _permutation(seed, stage, epoch, n)
    )
