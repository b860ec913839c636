"""Intuitor / RLIF (arXiv 2505.19590): self-certainty, the mean over the generated tokens of
KL(uniform || p) = logsumexp(logits) - mean(logits) - log |V|. Computed by the scorer in the
same teacher-forced pass that gives the policy log-probs, so it costs no extra forward."""

from latro.rewards import Reward, RewardInputs


def self_certainty(batch: RewardInputs):
    if batch.certainty is None:
        raise ValueError("self_certainty needs the scorer's certainties (score with with_certainty=True)")
    return batch.certainty


REWARD = Reward("self_certainty", self_certainty, estimator="group_norm", own_answer=True, certainty=True)
