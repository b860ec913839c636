"""LaTRO (arXiv 2411.04282, Eq. 3): the policy's own log-likelihood of the gold answer after the
sampled rationale, summed over the answer tokens."""

import torch

from latro.rewards import RewardContext, register_reward
from latro.trajectories import Trajectories


@register_reward("latro", estimator="rloo", forces_gold=True)
def answer_likelihood(trajectories: Trajectories, context: RewardContext) -> torch.Tensor:
    return trajectories.forced_logprob.detach()
