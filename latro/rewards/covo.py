"""CoVo (arXiv 2506.08745): consistency and volatility of the intermediate reasoning states.

For each sample, its rationale is split into steps (lines; at most `covo_max_states`, merged into
contiguous chunks when longer). After each state s_i = prompt + steps[:i+1], the distance to every
candidate answer y_k of the group is the mean negative log-likelihood of y_k after
s_i + `covo_answer_prefix` ("The answer is "; the paper's is "The answer is: "), teacher-forced
with the policy: each response is run once and every (state, candidate) branch then adds only
its own few tokens to the cached prefix (`latro.scorer.branch_logprobs`), instead of one full
pass per branch, T x C of them per response. A sample whose own answer y_j is closest along the way is consistent (Con:
fraction of states where y_j is strictly closest); one that leans to other answers late is
volatile (Vol: (last state where y_j is not closest, + 1) / T). The samples sharing an answer
form a cluster whose reward every member gets:
    vector (default)  r = |sum_g Con_g * exp(i Vol_g)| / G
    linear            r = sum_g (Con_g - Vol_g) / G
Samples without an answer get 0, and so does a group that agrees on a single answer: with no
other candidate, "closer than every other answer" has no meaning (the public code does the same).
`covo_binarize` reproduces the public code's 0/1 reward (r >= 0.5 vector, >= 0.05 linear).
`covo_curiosity` > 0 adds that weight times the curiosity bonus, the mean over states of the
step's perplexity minus ln(KL(P || U)^(1/3) + 1), with P the softmax of -distance over the
candidates and U uniform (the public code computes it and never adds it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from latro.rewards import RewardContext, register_reward
from latro.scorer import branch_logprobs
from latro.settings import Checked, setting
from latro.trajectories import Trajectories


@dataclass
class CoVoOptions(Checked):
    """Settings of the covo reward (Zhang et al., 2025, arXiv 2506.08745)."""

    covo_aggregation: str = setting("vector", "How Con/Vol of a cluster's samples become its reward: vector "
                                         "(the paper's preferred form) or linear.", choices=["vector", "linear"])
    covo_binarize: bool = setting(False, "Reward 1 when the cluster reward is >= 0.5 (linear: >= 0.05), else 0, "
                                    "as the public CoVo code does.")
    covo_curiosity: float = setting(0.0, "Weight of CoVo's curiosity bonus (step perplexity minus "
                                    "ln(KL(P||U)^(1/3)+1)); 0 = off, as in the public code's effect.", min=0)
    covo_max_states: int = setting(15, "Most intermediate states per sample; longer rationales are merged into "
                                  "this many chunks of lines (the paper: T = 15).", min=1)
    covo_answer_prefix: str = setting("The answer is ", "Text after each state before a candidate answer. The paper "
                                                   "uses 'The answer is: '; the default is the phrase latro's task "
                                                   "prompts ask for, which a model scores in its own format (on the "
                                                   "demo model the reward's AUROC for right answers: 0.79 vs 0.59).",
                            allow_empty=True)
    covo_batch_size: int = setting(64, "Sequences per no-grad teacher-forced pass of the CoVo distances.", min=1)


def consistency_volatility(distances: torch.Tensor, own: int) -> tuple[float, float]:
    """Con and Vol of a trajectory from its [T states, C candidates] distances; `own` is the
    column of its own answer. Ties count as "not closest". One candidate: (1, 0)."""
    states = distances.shape[0]
    others = torch.cat([distances[:, :own], distances[:, own + 1 :]], dim=1)
    if others.shape[1] == 0:
        return 1.0, 0.0
    closest = distances[:, own] < others.min(dim=1).values
    con = closest.float().mean().item()
    not_closest = (~closest).nonzero().flatten()
    vol = (not_closest[-1].item() + 1) / states if len(not_closest) else 0.0
    return con, vol


def aggregate(con: list[float], vol: list[float], mode: str = "vector") -> float:
    """The reward of a cluster of G trajectories sharing an answer, from their Con and Vol."""
    if mode == "vector":
        x = sum(c * math.cos(v) for c, v in zip(con, vol))
        y = sum(c * math.sin(v) for c, v in zip(con, vol))
        return math.hypot(x, y) / len(con)
    if mode == "linear":
        return sum(c - v for c, v in zip(con, vol)) / len(con)
    raise ValueError(f"unknown CoVo aggregation {mode!r}; expected vector or linear")


def group_rewards(distances: list[torch.Tensor | None], answers: list[str | None], candidates: list[str],
                  mode: str = "vector", binarize: bool = False) -> list[float]:
    """CoVo rewards of one group. distances[j]: [T_j, len(candidates)] for a sample with an answer."""
    rewards = [0.0] * len(answers)
    if len(candidates) < 2:
        return rewards
    threshold = 0.5 if mode == "vector" else 0.05
    for answer in candidates:
        members = [j for j, a in enumerate(answers) if a == answer]
        cv = [consistency_volatility(distances[j], candidates.index(answer)) for j in members]
        r = aggregate([c for c, _ in cv], [v for _, v in cv], mode)
        if binarize:
            r = float(r >= threshold)
        for j in members:
            rewards[j] = r
    return rewards


def state_ends(tokenizer, ids: list[int], max_states: int) -> list[int]:
    """Token counts of ids at which each state ends: after every non-empty line, merged into at
    most `max_states` contiguous chunks. An empty rationale has one state, the prompt alone."""
    ends, line_has_text = [], False
    for i, piece in enumerate(tokenizer.batch_decode([[t] for t in ids])):
        *closed, open_part = piece.split("\n")
        for part in closed:  # each newline in this token closes a line
            if line_has_text or part.strip():
                ends.append(i + 1)
            line_has_text = False
        line_has_text = line_has_text or bool(open_part.strip())
    if line_has_text:
        ends.append(len(ids))
    ends = sorted(set(ends))
    if not ends:
        return [0]
    if len(ends) > max_states:
        ends = [ends[math.ceil((c + 1) * len(ends) / max_states) - 1] for c in range(max_states)]
    return ends


def distance_matrices(trajectories: Trajectories, context: RewardContext, group: range,
                      states: dict[int, list[int]], candidates: list[str], example) -> dict[int, torch.Tensor]:
    """For each sample j of the group with states, the [T_j, C] mean NLL of each candidate."""
    options, tok, rollouts = context.options, context.tokenizer, trajectories.rollouts
    prefix = options.covo_answer_prefix
    stem, space = prefix.rstrip(), prefix[len(prefix.rstrip()):]
    stem_ids = {nl: tok(("\n" if nl else "") + stem, add_special_tokens=False).input_ids for nl in (False, True)}
    cand_ids = [tok(space + context.task.answer_span(c, example), add_special_tokens=False).input_ids
                for c in candidates]
    samples = [j for j in group if states.get(j)]
    sequences = [rollouts[j].prompt_ids + rollouts[j].rationale_ids for j in samples]
    branches = []
    for row, j in enumerate(samples):
        rollout = rollouts[j]
        for end in states[j]:
            head = rollout.rationale_ids[:end]
            needs_newline = bool(head) and not tok.decode(head[-1:]).endswith(("\n", " "))
            branches += [(row, len(rollout.prompt_ids) + end, stem_ids[needs_newline], ids) for ids in cand_ids]
    logp = branch_logprobs(context.model, sequences, branches, options.covo_batch_size,
                           tok.pad_token_id if tok.pad_token_id is not None else 0)
    nll = torch.tensor([-lp / len(b[3]) for lp, b in zip(logp, branches)])
    matrices, i = {}, 0
    for j in samples:
        t = len(states[j]) * len(candidates)
        matrices[j] = nll[i : i + t].view(len(states[j]), len(candidates))
        i += t
    return matrices


def curiosity(token_logp: torch.Tensor, ends: list[int], distances: torch.Tensor) -> float:
    """Mean over states of the step's perplexity minus ln(KL(P || U)^(1/3) + 1)."""
    bonuses, start = [], 0
    for i, end in enumerate(ends):
        step = token_logp[start:end]
        perplexity = math.exp(-step.mean().item()) if len(step) else 1.0
        p = torch.softmax(-distances[i], dim=0)
        kl = (p * (p * len(p)).clamp(min=1e-12).log()).sum().clamp(min=0).item()
        bonuses.append(perplexity - math.log(kl ** (1 / 3) + 1))
        start = end
    return sum(bonuses) / len(bonuses)


@register_reward("covo", estimator="batch_whiten", own_answer=True, beta=1e-4, options=CoVoOptions)
def covo(trajectories: Trajectories, context: RewardContext) -> torch.Tensor:
    options, k, answers = context.options, context.group_size, trajectories.own_answers
    token_logp = trajectories.sampled_token_logprobs() if options.covo_curiosity else None
    rewards = []
    for start in range(0, len(answers), k):
        group = range(start, start + k)
        candidates = list(dict.fromkeys(answers[j] for j in group if answers[j] is not None))  # in order seen
        if len(candidates) < 2:
            rewards += [0.0] * k
            continue
        states = {j: state_ends(context.tokenizer, trajectories.rollouts[j].rationale_ids, options.covo_max_states)
                  for j in group if answers[j] is not None}
        matrices = distance_matrices(trajectories, context, group, states, candidates, context.examples[start])
        local = group_rewards([matrices.get(j) for j in group], [answers[j] for j in group], candidates,
                              options.covo_aggregation, options.covo_binarize)
        if options.covo_curiosity:
            for offset, j in enumerate(group):
                if j in matrices:
                    local[offset] += options.covo_curiosity * curiosity(token_logp[j], states[j], matrices[j])
        rewards += local
    return torch.tensor(rewards)


def groups_with_signal(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B] bool: False for every rollout of a group whose CoVo rewards are all 0 (one answer, no
    answers, or no cluster rewarded). CoVo's public script drops groups with mean reward < 0.001
    before the advantages; on its 0/1 reward those are the all-zero groups. On latro's continuous
    reward, all-zero keeps the small positive rewards and, with the linear form, the negative ones,
    which still rank the group's samples."""
    groups = scores.view(-1, group_size)
    return (groups != 0).any(1, keepdim=True).expand_as(groups).reshape(-1)

