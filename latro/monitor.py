"""Can a self-reward be trusted? Per-step diagnostics against the gold answers, when known.

The question readers of self-rewarding papers ask: does the reward pay for wrong reasoning, and
is the policy collapsing onto one (possibly wrong) answer? These numbers answer it every step.
"""

from __future__ import annotations

from latro.evaluate import majority


def auroc(scores: list[float], labels: list[bool]) -> float | None:
    """Probability that a random positive outscores a random negative (ties count half);
    None when only one class is present."""
    return grouped_auroc(scores, labels, max(len(scores), 1))


def grouped_auroc(scores: list[float], labels: list[bool], group_size: int) -> float | None:
    """AUROC over (right, wrong) pairs of the same question only: what a group-relative estimator
    sees, free of differences in reward scale between questions."""
    wins = pairs = 0.0
    for start in range(0, len(scores), group_size):
        s, y = scores[start : start + group_size], labels[start : start + group_size]
        for p in (a for a, ok in zip(s, y) if ok):
            for n in (b for b, ok in zip(s, y) if not ok):
                wins += (p > n) + 0.5 * (p == n)
                pairs += 1
    return wins / pairs if pairs else None


def reward_diagnostics(task, examples, rewards: list[float], answers: list[str | None], group_size: int) -> dict:
    """Sampled-answer accuracy, reward-vs-correctness AUROC, majority-vs-gold agreement, and
    distinct answers per group (collapse shows as this falling towards 1)."""
    correct = [task.is_correct(a, ex) for a, ex in zip(answers, examples)]
    groups = range(0, len(answers), group_size)
    votes = [majority(answers[g : g + group_size]) for g in groups]
    return {
        "sample_accuracy": sum(correct) / len(correct),
        "answer_parsed": sum(a is not None for a in answers) / len(answers),
        "reward_auroc": auroc(rewards, correct),
        "reward_auroc_in_group": grouped_auroc(rewards, correct, group_size),
        "majority_agreement": sum(task.is_correct(v, examples[g]) for v, g in zip(votes, groups)) / len(votes),
        "distinct_answers": sum(len({a for a in answers[g : g + group_size] if a is not None})
                                for g in groups) / len(votes),
    }
