"""Verifiable reward (the supervised baseline of GRPO-style training): 1 when the sample's own
final answer is correct, else 0. Needs gold labels; here to compare self-rewards against."""

import torch

from latro.rewards import Reward, RewardInputs


def correctness(batch: RewardInputs) -> torch.Tensor:
    return torch.tensor([float(batch.task.is_correct(a, ex)) for a, ex in zip(batch.answers, batch.examples)])


REWARD = Reward("gold", correctness, estimator="group_norm", own_answer=True)
