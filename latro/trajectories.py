"""The record that flows through one training step: rollout -> scorer -> rewards -> estimator.

Each stage fills its group of fields; a reader knows what exists at each stage without reading
the stages (as OpenRLHF's `Experience` and torchtune's `GRPOTrajectory`). B = questions x K rows,
the K trajectories of a question consecutive; T = padded sequence length; M = scored tokens of
the whole batch, in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from latro.rollout import Rollout

# Segment codes of the scored tokens (0: prompt or padding, not scored).
SAMPLED = 1  # tokens the policy sampled and is trained on: the rationale (latro) or the whole response
FORCED = 2  # tokens teacher-forced after them: the gold answer (latro), none for own-answer rewards


@dataclass
class Trajectories:
    # --- from the rollout engine
    rollouts: list[Rollout]  # B, each with its text, stop pattern and compute accounting
    sampled_ids: list[list[int]]  # B x (sampled tokens), what the gradient acts on
    forced_ids: list[list[int]]  # B x (forced tokens), [] when nothing is forced
    stopped: torch.Tensor  # [B] bool: reached a stop pattern or end token within the budget
    own_answers: list[str | None]  # B, the answer each trajectory gives itself (None: none)
    voter_answers: list[list[str | None]] | None = None  # per question, the answers that vote on
    # its majority: the K trained ones, then those of samples drawn only to vote; None = the K

    # --- packed for the scorer (right-padded)
    input_ids: torch.Tensor | None = None  # [B, T] prompt + sampled + forced
    attention_mask: torch.Tensor | None = None  # [B, T]
    segments: torch.Tensor | None = None  # [B, T] SAMPLED / FORCED per token, 0 elsewhere

    # --- from the scorer: the policy (with gradient) and the frozen reference pi_0 (without)
    token_logprobs: torch.Tensor | None = None  # [M] log pi of each scored token
    sampled_logprob: torch.Tensor | None = None  # [B] log pi(sampled | prompt), summed
    forced_logprob: torch.Tensor | None = None  # [B] log pi(forced | prompt + sampled), summed
    certainty: torch.Tensor | None = None  # [B] mean self-certainty of the sampled tokens, when asked
    ref_token_logprobs: torch.Tensor | None = None  # [M] log pi_0 of each scored token (beta > 0)
    ref_sampled_logprob: torch.Tensor | None = None  # [B] log pi_0(sampled | prompt), summed

    # --- from the rewards and the estimator
    reward_parts: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [B] each reward's own score
    reward_sum: torch.Tensor | None = None  # [B] the parts' weighted sum, before KL and non-stop penalty
    rewards: torch.Tensor | None = None  # [B] after KL (when in the reward), non-stop penalty, weights
    advantages: torch.Tensor | None = None  # [B]
    keep: torch.Tensor | None = None  # [B] bool, rows left in the loss (CoVo's group filter); None = all

    @property
    def prompt_ids(self) -> list[list[int]]:
        return [r.prompt_ids for r in self.rollouts]

    def sampled_token_logprobs(self) -> list[torch.Tensor]:
        """Per trajectory, the policy's log-prob of each sampled token, in order (detached)."""
        kind = self.segments[:, 1:][self.segments[:, 1:] != 0]
        counts = (self.segments == SAMPLED).sum(1).tolist()
        return list(self.token_logprobs[kind == SAMPLED].detach().split(counts))
