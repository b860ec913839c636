"""The LaTRO objective (arXiv 2411.04282, Prop. 2) as a loss whose gradient is the estimator:

    grad = 1/(NK) sum_{i,k} [ A_ik grad log pi(z_ik | x_i) + w grad log pi(y_i | x_i + z_ik) ]
    r(z) = reward(z) - beta (log pi(z|x) - log pi_0(z|x)),   A from the chosen estimator.

The reward and the KL are detached: only the two log-prob terms carry gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Objective:
    loss: torch.Tensor
    rewards: torch.Tensor  # [B] after KL and non-stop penalty
    advantages: torch.Tensor  # [B]
    kl: torch.Tensor  # [B] log pi(z|x) - log pi_0(z|x)


def nonstop_penalty(rewards: torch.Tensor, stopped: torch.Tensor, gamma: float) -> torch.Tensor:
    """A rationale with no stop pattern within the budget gets gamma x the batch mean reward
    (the paper; rewards are log-likelihoods, negative, so gamma = 2 doubles the penalty)."""
    return torch.where(stopped, rewards, gamma * rewards.mean())


def latro_objective(*, rationale_logp, answer_logp, ref_rationale_logp, reward, stopped,
                    group_size: int, beta: float, gamma: float, answer_weight: float,
                    estimator) -> Objective:
    kl = rationale_logp.detach() - ref_rationale_logp if ref_rationale_logp is not None \
        else torch.zeros_like(reward)
    rewards = nonstop_penalty(reward.detach() - beta * kl, stopped, gamma)
    advantages = estimator(rewards, group_size)
    per_rollout = advantages * rationale_logp + answer_weight * answer_logp
    return Objective(loss=-per_rollout.mean(), rewards=rewards, advantages=advantages, kl=kl)
