"""Reward plug-ins: a scored batch of rollouts -> one number per rollout.

A new self-reward is one module defining `REWARD = Reward(...)` around a function
`score(batch: RewardInputs) -> Tensor[B]`, plus its name in `_MODULES`. The KL penalty to the
initial model and LaTRO's non-stop penalty are applied by the trainer on top, so a reward returns
only its own score. Rewards combine with weights: `--reward covo,self_certainty:0.1`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from latro.rollout import Rollout
from latro.tasks import Example, Task


@dataclass
class RewardInputs:
    task: Task
    rollouts: list[Rollout]
    examples: list[Example]  # the question of each rollout
    group_size: int  # K rollouts per question, consecutive
    answers: list[str | None]  # each rollout's own parsed final answer (None: none was given)
    rationale_logp: torch.Tensor  # [B] log pi(sampled tokens | question), detached
    answer_logp: torch.Tensor | None = None  # [B] log pi(gold answer | question, rationale), detached
    certainty: torch.Tensor | None = None  # [B] mean self-certainty of the sampled tokens
    sampled_token_logp: list[torch.Tensor] = field(default_factory=list)  # per rollout, per token
    model: Any = None  # the policy, for rewards that need more teacher-forced passes (no grad)
    tokenizer: Any = None
    settings: Any = None  # the run's config (reward-specific options, e.g. covo_*)
    voters: list[list[str | None]] | None = None  # per question, the answers that vote (majority): the
    # K trained ones, then those of samples drawn only to vote; None: the K trained ones


@dataclass(frozen=True)
class Reward:
    name: str
    score: Callable[[RewardInputs], torch.Tensor]
    estimator: str  # the advantage estimator of the method's paper
    forces_gold: bool = False  # needs the gold answer teacher-forced after the rationale (LaTRO)
    own_answer: bool = False  # reads the model's own final answer
    certainty: bool = False  # needs the scorer's per-token self-certainty
    beta: float | None = None  # the method paper's KL weight, when it differs from LaTRO's


_MODULES = ["latro", "covo", "majority", "self_certainty", "gold"]
REWARDS: dict[str, Reward] = {m: importlib.import_module(f"latro.rewards.{m}").REWARD for m in _MODULES}


def get_reward(name: str) -> Reward:
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; known: {', '.join(REWARDS)}")
    return REWARDS[name]


def parse_rewards(spec: str) -> list[tuple[Reward, float]]:
    """"covo" or "covo,self_certainty:0.1" -> [(reward, weight), ...]; the weight defaults to 1."""
    parts = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        name, _, weight = item.partition(":")
        try:
            parts.append((get_reward(name.strip()), float(weight) if weight else 1.0))
        except ValueError as err:
            raise ValueError(f"--reward {spec!r}: {err}") from None
    if not parts:
        raise ValueError("--reward is empty: name at least one reward")
    names = [r.name for r, _ in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"--reward {spec!r} names a reward twice")
    return parts


def combined(parts: list[tuple[Reward, float]], batch: RewardInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the rewards and each reward's own score."""
    scores = {reward.name: reward.score(batch).detach().float() for reward, _ in parts}
    total = sum(weight * scores[reward.name] for reward, weight in parts)
    return total, scores
