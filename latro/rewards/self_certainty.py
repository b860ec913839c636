"""Intuitor / RLIF (arXiv 2505.19590): self-certainty, the mean over the generated tokens of
KL(uniform || p) = logsumexp(logits) - mean(logits) - log |V|. Computed by the scorer in the
same teacher-forced pass that gives the policy log-probs, so it costs no extra forward."""

import torch

from latro.rewards import RewardContext, register_reward
from latro.trajectories import Trajectories


@register_reward("self_certainty", estimator="group_norm", own_answer=True, certainty=True)
def self_certainty(trajectories: Trajectories, context: RewardContext) -> torch.Tensor:
    if trajectories.certainty is None:
        raise ValueError("self_certainty needs the scorer's certainties (score with with_certainty=True)")
    return trajectories.certainty
