"""Verifiable reward (the supervised baseline of GRPO-style training): 1 when the sample's own
final answer is correct, else 0. Needs gold labels; here to compare self-rewards against."""

import torch

from latro.rewards import RewardContext, register_reward
from latro.trajectories import Trajectories


@register_reward("gold", estimator="group_norm", own_answer=True)
def correctness(trajectories: Trajectories, context: RewardContext) -> torch.Tensor:
    return torch.tensor([float(context.task.is_correct(a, ex))
                         for a, ex in zip(trajectories.own_answers, context.examples)])
