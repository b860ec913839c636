"""LaTRO (arXiv 2411.04282, Eq. 3): the policy's own log-likelihood of the gold answer after the
sampled rationale, summed over the answer tokens."""

from latro.rewards import Reward, RewardInputs


def answer_likelihood(batch: RewardInputs):
    return batch.answer_logp


REWARD = Reward("latro", answer_likelihood, estimator="rloo", forces_gold=True)
