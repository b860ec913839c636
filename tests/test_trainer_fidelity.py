"""The trainer wires the fidelity settings into a step: where the KL goes, CoVo's group filter,
majority voters beyond the trained samples, and the non-stop penalty on LaTRO's part only."""

import pytest
import torch

import latro.rollout
from latro.algorithms import build_trainer
from latro.algorithms.latro import LaTRO
from latro.config import TrainConfig
from latro.rewards import parse_rewards
from latro.rollout import Rollout


def config(model_dir, data, out, **kw):
    base = {"model": str(model_dir), "task": "jsonl", "train_file": str(data / "train.jsonl"),
            "validation_file": str(data / "validation.jsonl"), "output_dir": str(out), "num_samples": 2,
            "questions_per_step": 2, "max_rationale_tokens": 6, "answer_tokens": 4, "lr": 1e-2, "seed": 0}
    return TrainConfig(**{**base, **kw})


def move_reference(trainer):
    """pi_0 away from the policy, so that the KL to it is not 0 at the first step."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainer.ref.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def weights(trainer):
    return [p.detach().clone() for p in trainer.policy.parameters()]


@pytest.mark.parametrize("reward,flags,place", [
    ("latro", {}, "reward"), ("covo", {}, "reward"), ("majority", {}, "loss"), ("gold", {}, "loss"),
    ("latro", {"estimator": "group_norm"}, "loss"), ("majority", {"kl_in": "reward"}, "reward")])
def test_kl_place_default_follows_the_estimator(tiny_model_dir, arith_files, tmp_path, reward, flags, place):
    assert build_trainer(config(tiny_model_dir, arith_files, tmp_path, reward=reward, **flags)).algorithm.kl_in == place


def test_kl_in_the_loss_is_all_a_unanimous_batch_learns(tiny_model_dir, arith_files, tmp_path):
    # The tiny random model never writes an answer: every majority reward is 0, every group unanimous.
    trainer = build_trainer(config(tiny_model_dir, arith_files, tmp_path / "loss", reward="majority", beta=0.05))
    move_reference(trainer)
    metrics = trainer.step(0)
    assert metrics["answer_parsed"] == 0 and metrics["reward_mean"] == 0.0  # no KL in the reward
    assert metrics["kl_k3"] > 0 and metrics["loss"] == pytest.approx(0.05 * metrics["kl_k3"], rel=1e-5)

    inside = build_trainer(config(tiny_model_dir, arith_files, tmp_path / "reward", reward="majority", beta=0.05,
                            kl_in="reward"))
    move_reference(inside)
    metrics = inside.step(0)
    assert "kl_k3" not in metrics and metrics["reward_mean"] == pytest.approx(-0.05 * metrics["kl"], rel=1e-5)


@pytest.mark.parametrize("covo_filter", [True, False])
def test_covo_filter_drops_groups_without_reward_and_skips_an_empty_step(
        tiny_model_dir, arith_files, tmp_path, covo_filter):
    trainer = build_trainer(config(tiny_model_dir, arith_files, tmp_path, reward="covo", beta=0.05,
                                   covo_filter=covo_filter))
    move_reference(trainer)
    before, lr = weights(trainer), trainer.scheduler.get_last_lr()[0]
    metrics = trainer.step(0)
    assert metrics["answer_parsed"] == 0  # no answers: every CoVo reward is 0
    moved = any(not torch.equal(a, b) for a, b in zip(before, weights(trainer)))
    if covo_filter:  # every group dropped: no update at all, the schedule still advances
        assert metrics["dropped_groups"] == 2 and metrics["grad_norm"] == 0.0 and not moved
        assert metrics["lr"] == lr and trainer.scheduler.scheduler.last_epoch == 1
    else:  # whitening turns the KL differences of reward-less samples into unit advantages
        assert "dropped_groups" not in metrics and moved


def fake_sampler(tokenizer, answers_per_question):
    """A stand-in for `latro.rollout.sample`: question q's j-th sample answers answers_per_question[j]."""
    calls = []

    def sample(model, tok, prompts, *, num_samples, **kw):
        calls.append(num_samples)
        rollouts = []
        for q, prompt in enumerate(prompts):
            for answer in answers_per_question[:num_samples]:
                text = f"so The answer is {answer}."
                ids = tokenizer(text, add_special_tokens=False).input_ids
                rationale = tokenizer("so", add_special_tokens=False).input_ids
                rollouts.append(Rollout(q, prompt, rationale, "so", " ", text, ids, "The answer is", len(ids)))
        return rollouts

    return sample, calls


@pytest.mark.parametrize("voters,reward_mean", [(0, 1.0), (4, 0.5)])
def test_majority_voters_are_sampled_and_vote_but_are_not_trained_on(
        tiny_model_dir, arith_files, tmp_path, monkeypatch, tokenizer, voters, reward_mean):
    # Samples answer 3, 4, 4, 4. The K = 2 trained ones tie (both rewarded); with the two extra
    # voters 4 is the majority, so only the second trained sample is rewarded.
    sample, calls = fake_sampler(tokenizer, ["3", "4", "4", "4"])
    monkeypatch.setattr(latro.rollout, "sample", sample)
    trainer = build_trainer(config(tiny_model_dir, arith_files, tmp_path, reward="majority", majority_voters=voters))
    metrics = trainer.step(0)
    batch = trainer.algorithm.last_trajectories
    rollouts = batch.rollouts
    assert calls == [max(2, voters)] and len(rollouts) == batch.input_ids.shape[0] == 4  # 2 questions x K
    assert metrics["reward_mean"] == reward_mean
    assert metrics["sampled_tokens"] == sum(r.num_sampled for r in rollouts) * max(2, voters) // 2


@pytest.mark.parametrize("voters,reward,message", [(1, "majority", "below --num-samples"),
                                                   (4, "gold", "only serves --reward majority")])
def test_majority_voters_are_checked(tiny_model_dir, arith_files, tmp_path, voters, reward, message):
    with pytest.raises(ValueError, match=message):
        build_trainer(config(tiny_model_dir, arith_files, tmp_path, reward=reward, majority_voters=voters))


def test_penalty_split_separates_latro_from_the_rest():
    trainer = LaTRO.__new__(LaTRO)  # only the reward list matters here
    trainer.rewards, trainer.forces_gold = parse_rewards("latro:2,gold:3"), True
    parts = {"latro": torch.tensor([-1.0, -2.0]), "gold": torch.tensor([1.0, 0.0])}
    total = torch.tensor([1.0, -4.0])
    own, rest = trainer.penalty_split(total, parts)
    assert own.tolist() == [-2.0, -4.0] and rest.tolist() == [3.0, 0.0]
    trainer.rewards = parse_rewards("latro")
    assert trainer.penalty_split(total, {"latro": total}) == (total, None)  # the paper's path, untouched
    trainer.rewards, trainer.forces_gold = parse_rewards("gold,self_certainty:0.1"), False
    assert trainer.penalty_split(total, parts)[1] is None
