"""The LaTRO objective (arXiv 2411.04282, Prop. 2) as a loss whose gradient is the estimator:

    grad = 1/(NK) sum_{i,k} [ A_ik grad log pi(z_ik | x_i) + w grad log pi(y_i | x_i + z_ik) ]
    r(z) = reward(z) - beta (log pi(z|x) - log pi_0(z|x)),   A from the chosen estimator.

The reward and the KL are detached: only the two log-prob terms carry gradient. With the KL in
the loss instead (`kl_in="loss"`, GRPO / TTRL / Intuitor), r(z) = reward(z) and the loss adds
beta x the per-token k3 estimate of KL(pi || pi_0), averaged over each sequence's sampled tokens,
with its gradient: inside a group-normalised reward, a KL term would be rescaled to unit size
whatever beta is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latro.scorer import SAMPLED

KL_PLACES = ("reward", "loss")


@dataclass
class Objective:
    loss: torch.Tensor
    rewards: torch.Tensor  # [B] after the KL (when in the reward) and the non-stop penalty
    advantages: torch.Tensor  # [B]
    kl: torch.Tensor  # [B] log pi(z|x) - log pi_0(z|x), summed over the sampled tokens
    kl_loss: torch.Tensor | None = None  # [B] mean per-token k3, when the KL is in the loss


def nonstop_penalty(rewards: torch.Tensor, stopped: torch.Tensor, gamma: float) -> torch.Tensor:
    """A rationale with no stop pattern within the budget gets gamma x the batch mean reward
    (the paper; rewards are log-likelihoods, negative, so gamma = 2 doubles the penalty)."""
    return torch.where(stopped, rewards, gamma * rewards.mean())


def k3_kl(token_logp: torch.Tensor, ref_token_logp: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Per sequence, the mean over its sampled tokens of k3 = exp(d) - d - 1 with d = log pi_0 -
    log pi (GRPO's unbiased, non-negative KL estimator); token log-probs in the scorer's
    row-major order. The gradient flows through `token_logp`. No sampled token: 0."""
    scored = segments[:, 1:]
    rows, cols = (scored != 0).nonzero(as_tuple=True)
    sampled = (scored[rows, cols] == SAMPLED).to(token_logp.dtype)
    d = ref_token_logp.detach() - token_logp
    k3 = (torch.exp(d) - d - 1) * sampled
    totals = k3.new_zeros(segments.shape[0]).index_add(0, rows, k3)
    counts = sampled.new_zeros(segments.shape[0]).index_add(0, rows, sampled)
    return totals / counts.clamp(min=1)


def latro_objective(*, rationale_logp, answer_logp, ref_rationale_logp, reward, stopped,
                    group_size: int, beta: float, gamma: float, answer_weight: float,
                    estimator, extra_reward=None, kl_in: str = "reward", kl_loss=None, keep=None) -> Objective:
    """`reward` is the part the non-stop penalty applies to (LaTRO's; with other rewards only,
    pass their sum and `stopped` all True); `extra_reward` is added after the penalty (the other
    parts of a combined reward). `kl_loss` [B]: `k3_kl` of the policy, needed with
    kl_in="loss". `keep` [B] (bool): rollouts left out of the loss and of the estimator's
    statistics (CoVo's group filter; for an estimator that takes `keep`)."""
    if kl_in not in KL_PLACES:
        raise ValueError(f"kl_in must be one of {KL_PLACES}, not {kl_in!r}")
    kl = rationale_logp.detach() - ref_rationale_logp if ref_rationale_logp is not None \
        else torch.zeros_like(reward)
    own = reward.detach() - beta * kl if kl_in == "reward" else reward.detach()
    rewards = nonstop_penalty(own, stopped, gamma)
    if extra_reward is not None:
        rewards = rewards + extra_reward.detach()
    advantages = estimator(rewards, group_size) if keep is None else estimator(rewards, group_size, keep=keep)
    per_rollout = rollout_objective(advantages, rationale_logp, answer_logp, answer_weight, beta,
                                    kl_loss if kl_in == "loss" else None)
    loss = -(per_rollout * loss_weights(keep, len(per_rollout), per_rollout)).sum()
    return Objective(loss=loss, rewards=rewards, advantages=advantages, kl=kl, kl_loss=kl_loss)


def rollout_objective(advantages, rationale_logp, answer_logp, answer_weight: float, beta: float,
                      kl_loss=None) -> torch.Tensor:
    """[B] each rollout's term of the Prop. 2 surrogate (to maximise); `advantages` detached,
    `kl_loss` (the per-token k3 mean, KL in the loss) subtracted with weight beta."""
    per_rollout = advantages.detach() * rationale_logp + answer_weight * answer_logp
    return per_rollout if kl_loss is None else per_rollout - beta * kl_loss


def loss_weights(keep, size: int, like: torch.Tensor) -> torch.Tensor:
    """[B] each rollout's weight in the loss, -sum(weight x term): 1/B, or 1/(rollouts kept) on
    the kept ones and 0 on the others. Fixed per step, so that micro-batches' shares of the loss
    (their rows' weighted sum) add up to the step's loss."""
    if keep is None:
        return like.new_full((size,), 1.0 / size)
    return keep.to(like.dtype) / keep.sum().clamp(min=1)
