"""Advantages of a step's rewards: raw, centred or whitened over the global batch, or centred /
whitened within each prompt's group of K samples (as group-relative policy optimisation does)."""

from __future__ import annotations

import torch

from t2bench.errors import ConfigError


def group_advantages(rewards: torch.Tensor, group_size: int, whiten: bool) -> torch.Tensor:
    """Each reward minus the mean of its group (``group_size`` consecutive positions: the
    samples of one prompt), divided by the group's std when ``whiten``. A group whose rewards
    are all equal gets exactly 0 (no rounding residue): it says nothing about which sample
    was better."""
    if rewards.numel() % group_size:
        raise ConfigError(
            f"{rewards.numel()} rewards do not split into groups of {group_size}; global_batch "
            "must be a multiple of group_size"
        )
    groups = rewards.view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if whiten:
        std = groups.std(dim=1, unbiased=False, keepdim=True)
        centred = centred / (std + 1e-6)
    constant = groups.amax(dim=1, keepdim=True) == groups.amin(dim=1, keepdim=True)
    return torch.where(constant, torch.zeros_like(centred), centred).flatten()


def advantages(rewards: torch.Tensor, mode: str, group_size: int = 1) -> torch.Tensor:
    """Advantages of the global batch's rewards (see ``TrainConfig.advantage``)."""
    if mode in ("group", "group_whiten"):
        return group_advantages(rewards, group_size, whiten=mode == "group_whiten")
    if mode == "raw":
        return rewards
    centred = rewards - rewards.mean()
    if mode == "center":
        return centred
    std = rewards.std(unbiased=False)
    return centred / (std + 1e-6) if std > 0 else centred
