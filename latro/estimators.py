"""Advantage estimators: rewards of K consecutive rollouts per question -> advantages."""

from __future__ import annotations

from collections.abc import Callable

import torch

from latro.registry import Registry

Estimator = Callable[..., torch.Tensor]  # (rewards [B], group_size, ...) -> advantages [B]
ESTIMATORS: Registry[Estimator] = Registry("estimator")


def register_estimator(name: str):
    """Register an advantage estimator under `name` (usable as --estimator name)."""
    return ESTIMATORS.decorator(name)


@register_estimator("rloo")
def rloo(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out baseline (LaTRO, Prop. 2): A_k = r_k - mean_{j != k} r_j."""
    if group_size < 2:
        raise ValueError("the leave-one-out baseline needs at least 2 samples per question")
    groups = rewards.view(-1, group_size)
    others = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).view(-1)


@register_estimator("group_norm")
def group_norm(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (arXiv 2402.03300): (r - group mean) / (group std + eps). A group whose rewards are
    all equal has nothing to prefer: its advantages are exactly 0, not rounding noise over eps."""
    groups = rewards.view(-1, group_size)
    centered = groups - groups.mean(1, keepdim=True)
    std = groups.std(1, keepdim=True) if group_size > 1 else torch.ones_like(groups)
    unanimous = (groups == groups[:, :1]).all(1, keepdim=True)
    return (centered / (std + eps)).masked_fill(unanimous, 0.0).view(-1)


@register_estimator("batch_whiten")
def batch_whiten(rewards: torch.Tensor, group_size: int, eps: float = 1e-4, gather=None,
                 keep: torch.Tensor | None = None) -> torch.Tensor:
    """REINFORCE++ (arXiv 2501.03262), as used by CoVo: whiten over the whole batch. With several
    processes, `gather` (accelerate's) pools every process's rewards, so the statistics are those
    of the global batch, not of each process's share. `keep` [B] (bool) leaves rollouts out of the
    statistics (CoVo's group filter); their advantages are 0."""
    pool = gather(rewards) if gather is not None else rewards
    if keep is not None:
        kept = keep.to(rewards.dtype)  # gathered as numbers, which every backend can
        pool = pool[(gather(kept) if gather is not None else kept) > 0]
    mean = pool.mean() if pool.numel() else rewards.new_tensor(0.0)
    std = pool.std() if pool.numel() > 1 else rewards.new_tensor(1.0)
    advantages = (rewards - mean) / (std + eps)
    return advantages if keep is None else advantages.masked_fill(~keep, 0.0)


def get_estimator(name: str) -> Estimator:
    return ESTIMATORS[name]
