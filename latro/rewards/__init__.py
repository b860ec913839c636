"""Reward plug-ins. A reward maps a scored batch of rollouts to one number per rollout.

A new self-reward is one module with a function `reward(batch: RewardInputs) -> Tensor` and one
line in REWARDS. The KL penalty to the initial model and the non-stop penalty are applied by the
trainer on top of any reward, so a reward returns only its own score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from latro.rollout import Rollout
from latro.tasks import Example, Task


@dataclass
class RewardInputs:
    task: Task
    rollouts: list[Rollout]
    examples: list[Example]  # the question of each rollout
    group_size: int  # K rollouts per question, consecutive
    answer_logp: torch.Tensor  # [B] policy log p(gold answer | question, rationale), detached
    rationale_logp: torch.Tensor  # [B] policy log p(rationale | question), detached
    answer_tokens: torch.Tensor  # [B] number of gold-answer tokens


def answer_likelihood(batch: RewardInputs) -> torch.Tensor:
    """LaTRO (arXiv 2411.04282, Eq. 3): the policy's own log-likelihood of the gold answer
    after the sampled rationale, summed over the answer tokens."""
    return batch.answer_logp


REWARDS: dict[str, Callable[[RewardInputs], torch.Tensor]] = {
    "latro": answer_likelihood,
}


def get_reward(name: str) -> Callable[[RewardInputs], torch.Tensor]:
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}")
    return REWARDS[name]
