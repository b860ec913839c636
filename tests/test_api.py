"""The public Python API: train 2 steps with a custom reward function on an in-memory dataset."""

import json

import torch

import latro
from latro import TrainConfig, register_reward
from latro.rewards import REWARDS


def test_train_from_python_with_a_custom_reward_and_in_memory_data(tiny_model_dir, tmp_path):
    seen = []

    @register_reward("test_api_short", estimator="group_norm", own_answer=True)
    def shorter_is_better(trajectories, context):
        # The function sees the policy's own per-trajectory log-probs, besides the sampled tokens.
        seen.append((trajectories.sampled_logprob.shape, len(context.examples)))
        return -torch.tensor([float(len(ids)) for ids in trajectories.sampled_ids])

    rows = [{"question": f"What is {a} plus {a}?", "answer": str(2 * a)} for a in range(1, 9)]
    cfg = TrainConfig(model=str(tiny_model_dir), reward="test_api_short", num_samples=2, questions_per_step=2,
                      max_steps=2, max_rationale_tokens=8, answer_tokens=4, lr=1e-3, eval_every=0, eval_limit=2,
                      eval_max_new_tokens=4, output_dir=str(tmp_path / "run"))
    try:
        run_dir = latro.train(cfg, dataset={"train": rows[:6], "validation": rows[6:]})
    finally:
        REWARDS.remove("test_api_short")  # other tests list the known rewards
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2] and (run_dir / "model").is_dir()
    assert seen == [(torch.Size([4]), 4)] * 2  # 2 questions x K = 2 per step, log-probs per trajectory
    assert all(m["reward_mean"] <= 0 for m in lines)  # minus the sampled lengths (and no KL in the reward)
