"""TTRL (arXiv 2504.16084): 1 when the sample's answer is the majority answer of its group, else 0.

Every answer tied for the most votes counts as the majority: breaking the tie by order would
reward an arbitrary one of equally supported answers. Samples without an answer get 0. With
`Trajectories.voter_answers` the vote is over more samples than are trained on (TTRL votes over 64).
"""

from collections import Counter

import torch

from latro.rewards import RewardContext, register_reward
from latro.trajectories import Trajectories


def majority_answers(answers: list[str | None]) -> set[str]:
    """The answers with the most votes (all of them when tied); empty when none parsed."""
    counts = Counter(a for a in answers if a is not None)
    top = max(counts.values(), default=0)
    return {a for a, n in counts.items() if n == top}


@register_reward("majority", estimator="group_norm", own_answer=True)
def majority_vote(trajectories: Trajectories, context: RewardContext) -> torch.Tensor:
    k, voters = context.group_size, trajectories.voter_answers
    rewards = []
    for q, start in enumerate(range(0, len(trajectories.own_answers), k)):
        group = trajectories.own_answers[start : start + k]
        winners = majority_answers(voters[q] if voters else group)
        rewards += [float(a is not None and a in winners) for a in group]
    return torch.tensor(rewards)

