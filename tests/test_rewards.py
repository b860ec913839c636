"""Self-rewards: CoVo's Con / Vol / aggregation on hand-made distances, self-certainty against a
direct computation, majority ties, weighted combinations, and the per-step diagnostics."""

import math
from types import SimpleNamespace

import pytest
import torch

from latro.monitor import auroc, grouped_auroc, reward_diagnostics
from latro.rewards import RewardContext, combined, get_reward, parse_rewards
from latro.rewards.covo import (
    CoVoOptions,
    aggregate,
    consistency_volatility,
    covo,
    curiosity,
    distance_matrices,
    group_rewards,
    state_ends,
)
from latro.rewards.majority import majority_answers
from latro.rollout import Rollout
from latro.scorer import TokenScorer, make_batch, sequence_logprobs
from latro.tasks.base import Example
from latro.tasks.gsm8k import NumericTask as ArithmeticTask
from latro.trajectories import Trajectories


def test_con_vol_by_hand():
    d = torch.tensor([[1.0, 2.0, 3.0],   # own (column 0) strictly closest
                      [2.0, 1.0, 3.0],   # another answer closer
                      [1.0, 1.0, 3.0],   # a tie: not "closest"
                      [0.5, 2.0, 0.9]])  # closest again
    con, vol = consistency_volatility(d, own=0)
    assert con == pytest.approx(2 / 4) and vol == pytest.approx(3 / 4)  # last miss at state index 2
    assert consistency_volatility(d[[0, 3]], own=0) == (1.0, 0.0)  # always closest: no volatility
    con, vol = consistency_volatility(d, own=2)
    assert con == 0.0 and vol == 1.0
    assert consistency_volatility(torch.tensor([[4.0], [2.0]]), own=0) == (1.0, 0.0)  # one candidate


def test_aggregation_vector_and_linear_by_hand():
    con, vol = [1.0, 0.5], [0.0, math.pi / 2]
    assert aggregate(con, vol, "vector") == pytest.approx(math.hypot(1.0, 0.5) / 2)
    assert aggregate(con, vol, "linear") == pytest.approx((1.0 + 0.5 - math.pi / 2) / 2)
    assert aggregate([1.0], [0.0], "vector") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        aggregate(con, vol, "mean")


def test_group_rewards_clusters_no_answer_and_single_cluster():
    answers = ["7", "9", None, "7"]
    d7a = torch.tensor([[1.0, 2.0], [1.0, 3.0]])  # "7" closest twice: Con 1, Vol 0
    d9 = torch.tensor([[1.0, 2.0], [3.0, 1.0]])   # its "9" closest only at the end: Con 1/2, Vol 1/2
    d7b = torch.tensor([[2.0, 1.0], [1.0, 2.0]])  # Con 1/2, Vol 1/2
    rewards = group_rewards([d7a, d9, None, d7b], answers, ["7", "9"], "vector")
    expected_7 = math.hypot(1 + 0.5 * math.cos(0.5), 0.5 * math.sin(0.5)) / 2
    assert rewards == pytest.approx([expected_7, 0.5, 0.0, expected_7])
    assert group_rewards([d7a, d9, None, d7b], answers, ["7", "9"], "vector", binarize=True) == [1.0, 1.0, 0.0, 1.0]
    linear = group_rewards([d7a, d9, None, d7b], answers, ["7", "9"], "linear", binarize=True)
    assert linear == [1.0, 0.0, 0.0, 1.0]  # 7: (1 + 0)/2 >= 0.05; 9: 0 < 0.05
    # Everyone agrees (one cluster) or nobody answered: no contrast, reward 0.
    assert group_rewards([d7a[:, :1], None], ["7", None], ["7"]) == [0.0, 0.0]
    assert group_rewards([None, None], [None, None], []) == [0.0, 0.0]


def test_state_ends_split_lines_skip_blank_and_merge(tokenizer):
    ids = tokenizer("\n12 + 3 = 15\n\n15 * 2 = 30\nso", add_special_tokens=False).input_ids
    ends = state_ends(tokenizer, ids, max_states=15)
    texts = [tokenizer.decode(ids[:e]) for e in ends]
    assert texts == ["\n12 + 3 = 15\n", "\n12 + 3 = 15\n\n15 * 2 = 30\n", "\n12 + 3 = 15\n\n15 * 2 = 30\nso"]
    many = tokenizer("\n".join(f"{i} + 1 = {i + 1}" for i in range(40)), add_special_tokens=False).input_ids
    merged = state_ends(tokenizer, many, max_states=15)
    assert len(merged) == 15 and merged == sorted(set(merged)) and merged[-1] == len(many)
    assert state_ends(tokenizer, [], 15) == [0]  # no rationale: the prompt alone is the one state


def test_curiosity_bonus_by_hand():
    logp = torch.tensor([-1.0, -1.0, -3.0])
    distances = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]])  # uniform, then P = (3/4, 1/4)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    expected = ((math.e - math.log(1)) + (math.exp(3.0) - math.log(kl ** (1 / 3) + 1))) / 2
    assert curiosity(logp, [2, 3], distances) == pytest.approx(expected)


def rollout(tokenizer, prompt, rationale, answer_text):
    r_ids = tokenizer(rationale, add_special_tokens=False).input_ids
    tail = tokenizer(answer_text, add_special_tokens=False).input_ids
    return Rollout(0, prompt, r_ids, rationale, "", rationale + answer_text, r_ids + tail,
                   "The answer is", len(r_ids) + len(tail))


def test_covo_through_a_model(tokenizer, tiny_model):
    """CoVo end to end: distances from batched teacher-forced passes equal a plain forward of
    each (state, candidate) text; clusters, no-answer samples and one-cluster groups get their
    rewards."""
    task = ArithmeticTask()
    ex = Example(id="q", question="Tom has 3 apples and buys 4 more.", answer="7")
    prompt = tokenizer("Tom has 3 apples and buys 4 more.", add_special_tokens=False).input_ids
    texts = [("3 + 4 = 7\n", " The answer is 7."), ("3 + 4 = 9\n", " The answer is 9."),
             ("I guess\n", " no idea"), ("3 + 4 = 7\n", " The answer is 7.")]
    rollouts = [rollout(tokenizer, prompt, z, y) for z, y in texts] * 2
    answers = ["7", "9", None, "7", "5", "5", "5", None]  # second group: one cluster
    cfg = CoVoOptions()
    batch = Trajectories(rollouts=rollouts, sampled_ids=[r.rationale_ids for r in rollouts],
                         forced_ids=[[] for _ in rollouts], stopped=torch.ones(8, dtype=torch.bool),
                         own_answers=answers)
    context = RewardContext(task=task, examples=[ex] * 8, group_size=4, model=tiny_model, tokenizer=tokenizer,
                            options=cfg)
    states = {j: state_ends(tokenizer, rollouts[j].rationale_ids, 15) for j in (0, 1, 3)}
    matrices = distance_matrices(batch, context, range(4), states, ["7", "9"], ex)
    assert set(matrices) == {0, 1, 3} and matrices[0].shape == (1, 2)
    for k, cand in enumerate(["7", "9"]):
        head = prompt + rollouts[1].rationale_ids + tokenizer("The answer is", add_special_tokens=False).input_ids
        tail = tokenizer(" " + cand, add_special_tokens=False).input_ids
        with torch.no_grad():
            logp = torch.log_softmax(tiny_model(torch.tensor([head + tail])).logits[0], -1)
        nll = -sum(logp[len(head) + i - 1, t] for i, t in enumerate(tail)) / len(tail)
        assert matrices[1][0, k].item() == pytest.approx(nll.item(), rel=1e-5)

    rewards = covo(batch, context)
    assert rewards.shape == (8,)
    assert rewards[2] == 0 and rewards[0] == rewards[3] and (rewards[4:] == 0).all()
    assert ((rewards >= 0) & (rewards <= 1)).all()
    # One state per sample, two candidates: a sample's Con is 1 exactly when the model finds its
    # own answer likelier after its rationale than the other one.
    cfg.covo_binarize = True
    assert set(covo(batch, context).tolist()) <= {0.0, 1.0}

    # The curiosity bonus, when switched on, is added with its weight to every answered sample
    # of a group with two or more candidates.
    cfg.covo_binarize = False
    g = torch.Generator().manual_seed(0)
    token_logp = [-torch.rand(len(r.completion_ids), generator=g) for r in rollouts]
    batch.sampled_token_logprobs = lambda: token_logp
    cfg.covo_curiosity = 0.5
    with_bonus = covo(batch, context)
    for j in (0, 1, 3):
        bonus = curiosity(token_logp[j], states[j], matrices[j])
        assert with_bonus[j].item() == pytest.approx(rewards[j].item() + 0.5 * bonus, rel=1e-5)
    assert with_bonus[2] == 0 and (with_bonus[4:] == 0).all()


def test_self_certainty_matches_a_direct_computation(tokenizer, tiny_model):
    prompts = [[5, 6, 7], [8, 9]]
    sampled = [[10, 11, 12, 13], [14, 15]]
    batch = make_batch(prompts, sampled, [[], []], tokenizer.pad_token_id)
    got = sequence_logprobs(TokenScorer(tiny_model, chunk_size=3)(batch.input_ids, batch.attention_mask,
                                                                   batch.segments, with_certainty=True),
                            batch.segments)
    for row, (p, z) in enumerate(zip(prompts, sampled)):
        with torch.no_grad():
            logits = tiny_model(torch.tensor([p + z])).logits[0, len(p) - 1 : len(p) + len(z) - 1].double()
        vocab = logits.shape[-1]
        probs = torch.softmax(logits, -1)
        kl_uniform = (1 / vocab * (torch.log(torch.tensor(1 / vocab)) - torch.log(probs))).sum(-1)
        assert got.certainty[row].item() == pytest.approx(kl_uniform.mean().item(), rel=1e-4)
    assert not got.certainty.requires_grad


def test_majority_ties_and_missing_answers():
    assert majority_answers(["3", "4", "3", "4", None]) == {"3", "4"}
    assert majority_answers([None, None]) == set()
    reward = get_reward("majority").score
    context = SimpleNamespace(group_size=4)
    batch = SimpleNamespace(own_answers=["3", "4", "3", "4", None, "5", "5", "6"], voter_answers=None)
    assert reward(batch, context).tolist() == [1, 1, 1, 1, 0, 1, 1, 0]
    assert reward(SimpleNamespace(own_answers=[None] * 4, voter_answers=None), context).tolist() == [0, 0, 0, 0]


def test_majority_votes_over_extra_samples_when_given():
    reward = get_reward("majority").score
    # K = 2 trained samples per question. Question 1: "3" and "4" tie among the trained samples; the
    # two extra voters say "4", so "4" is the majority. Question 2: "5" wins 3 votes to 2.
    answers = ["3", "4", "5", "6"]
    voters = [["3", "4", "4", "4"], ["5", "6", "6", "5", "5"]]
    context = SimpleNamespace(group_size=2)
    assert reward(SimpleNamespace(own_answers=answers, voter_answers=None), context).tolist() == [1, 1, 1, 1]
    assert reward(SimpleNamespace(own_answers=answers, voter_answers=voters), context).tolist() == [0, 1, 1, 0]


def test_gold_and_weighted_combination():
    task = ArithmeticTask()
    ex = Example(id="q", question="?", answer="12")
    batch = SimpleNamespace(own_answers=["12", "12.0", "13", None],
                            forced_logprob=torch.tensor([-1.0, -2.0, -3.0, -4.0]))
    context = RewardContext(task=task, examples=[ex] * 4, group_size=4)
    assert get_reward("gold").score(batch, context).tolist() == [1, 1, 0, 0]
    parts = parse_rewards("gold, latro:0.5")
    assert [(r.name, w) for r, w in parts] == [("gold", 1.0), ("latro", 0.5)]
    total, scores = combined(parts, batch, {"gold": context, "latro": context})
    assert total.tolist() == [0.5, 0.0, -1.5, -2.0] and set(scores) == {"gold", "latro"}
    for bad in ["nope", "gold,gold", "", "gold:x"]:
        with pytest.raises(ValueError):
            parse_rewards(bad)


def test_each_reward_names_its_papers_estimator():
    assert {n: get_reward(n).estimator for n in ["latro", "covo", "majority", "self_certainty", "gold"]} == {
        "latro": "rloo", "covo": "batch_whiten", "majority": "group_norm", "self_certainty": "group_norm",
        "gold": "group_norm"}


def test_auroc_and_diagnostics_by_hand():
    assert auroc([0.9, 0.8, 0.1, 0.8], [True, True, False, False]) == pytest.approx((2 + 1.5) / 4)
    assert auroc([1.0, 2.0], [True, True]) is None
    # Within groups only: group 1 ranks right above wrong, group 2 the reverse.
    assert grouped_auroc([5.0, 1.0, -9.0, -1.0], [True, False, True, False], 2) == pytest.approx(0.5)
    task = ArithmeticTask()
    exs = [Example(id="a", question="?", answer="1")] * 3 + [Example(id="b", question="?", answer="2")] * 3
    d = reward_diagnostics(task, exs, [1.0, 0.0, 0.0, 0.0, 1.0, 1.0], ["1", "1", "3", "4", None, "4"], 3)
    assert d["sample_accuracy"] == pytest.approx(2 / 6) and d["answer_parsed"] == pytest.approx(5 / 6)
    assert d["majority_agreement"] == 0.5 and d["distinct_answers"] == 1.5
    assert d["reward_auroc"] == pytest.approx((3 + 1) / 8)  # right: 1.0, 0.0 against wrong: 0, 0, 1, 1
