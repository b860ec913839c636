"""Reward plug-ins: a scored batch of trajectories -> one number per trajectory.

A new self-reward is one module in latro/rewards/ with a function registered where it is
defined:

    @register_reward("mine", estimator="group_norm", own_answer=True, options=MyOptions)
    def mine(trajectories: Trajectories, context: RewardContext) -> torch.Tensor:  # [B]
        ...

`options` is the reward's own settings dataclass (fields named `mine_*`, checked like every
setting); `latro train` gets a `--mine-*` flag and YAML key for each field. The KL penalty to the
initial model and LaTRO's non-stop penalty are applied by the algorithm on top, so a reward returns
only its own score. Rewards combine with weights: `--reward covo,self_certainty:0.1`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from latro.registry import Registry, import_all
from latro.tasks import Example, Task
from latro.trajectories import Trajectories


@dataclass
class RewardContext:
    """What a reward may read besides the trajectories."""

    task: Task  # parses and checks answers
    examples: list[Example]  # B, the question of each trajectory
    group_size: int  # K trajectories per question, consecutive
    model: Any = None  # the policy, for rewards that need more teacher-forced passes (no grad)
    tokenizer: Any = None
    options: Any = None  # this reward's own options (an instance of Reward.options), None if it has none


RewardFn = Callable[[Trajectories, RewardContext], torch.Tensor]


@dataclass(frozen=True)
class Reward:
    name: str
    score: RewardFn
    estimator: str  # the advantage estimator of the method's paper
    forces_gold: bool = False  # needs the gold answer teacher-forced after the rationale (LaTRO)
    own_answer: bool = False  # reads the model's own final answer
    certainty: bool = False  # needs the scorer's per-token self-certainty
    beta: float | None = None  # the method paper's KL weight, when it differs from the task's
    options: type | None = None  # its settings dataclass (latro.settings.Checked), fields `<name>_*`

    def options_from(self, cfg) -> Any:
        """This reward's options, read from a run config that has their fields."""
        if self.options is None:
            return None
        return self.options(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(self.options)})


REWARDS: Registry[Reward] = Registry("reward")


def register_reward(name: str, *, estimator: str, forces_gold: bool = False, own_answer: bool = False,
                    certainty: bool = False, beta: float | None = None, options: type | None = None):
    """Decorator: register `score(trajectories, context) -> Tensor[B]` as reward `name`."""
    return REWARDS.decorator(name, lambda fn: Reward(name, fn, estimator, forces_gold, own_answer, certainty,
                                                     beta, options))


def get_reward(name: str) -> Reward:
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


def combined(parts: list[tuple[Reward, float]], trajectories: Trajectories,
             contexts: dict[str, RewardContext]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the rewards and each reward's own score; `contexts`: per reward name."""
    scores = {r.name: r.score(trajectories, contexts[r.name]).detach().float() for r, _ in parts}
    total = sum(weight * scores[reward.name] for reward, weight in parts)
    return total, scores


def option_classes() -> list[type]:
    """The options dataclasses of the registered rewards (bases of the run configs)."""
    return [r.options for _, r in REWARDS.items() if r.options is not None]


import_all("latro.rewards")
