"""--micro-batch-size: a step's sequences back-propagated in micro-batches with gradient
accumulation give the gradient, the metrics and the weights of the whole step in one pass."""

import json

import pytest
import torch
from accelerate.state import AcceleratorState

from latro.algorithms import build_trainer
from latro.config import TrainConfig
from latro.errors import SettingError

ROLLOUTS = 8  # 2 questions x K = 4: micro-batches of 3 leave a last one of 2


def config(model_dir, data, out, **kw):
    settings = dict(model=str(model_dir), task="jsonl", train_file=str(data / "train.jsonl"),
                    validation_file=str(data / "validation.jsonl"), output_dir=str(out), num_samples=4,
                    questions_per_step=2, max_rationale_tokens=8, answer_tokens=0, lr=1e-3,
                    lr_schedule="constant", max_grad_norm=0.0, eval_every=0, save_every=100, max_steps=2)
    return TrainConfig(**{**settings, **kw})


def build(cfg, algorithm="latro", nudge=False):
    """A fresh trainer (accelerate keeps one process-wide state; each loop sets its accumulation).
    `nudge`: move the policy off the reference, the same way every time, so that a KL term has a
    gradient at the first step."""
    AcceleratorState._reset_state(reset_partial_state=True)
    trainer = build_trainer(cfg, algorithm)
    if nudge:
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in trainer.policy.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return trainer


def first_step_gradient(trainer) -> tuple[dict[str, torch.Tensor], dict]:
    """(every parameter's gradient as the optimizer sees it at step 1, the step's metrics)."""
    grads, step = {}, trainer.optimizer.step

    def record(*args, **kw):
        grads.update({n: p.grad.clone() for n, p in trainer.policy.named_parameters() if p.grad is not None})
        return step(*args, **kw)

    trainer.optimizer.step = record
    return grads, trainer.step(0)


CASES = {
    "latro-rloo-kl-in-reward": dict(reward="latro", estimator="rloo", beta=0.05),
    "group-norm-kl-in-loss": dict(reward="latro", estimator="group_norm", kl_in="loss", beta=0.5),
}


@pytest.mark.parametrize("case", CASES)
def test_micro_batches_give_the_full_batch_gradient(case, tiny_model_dir, arith_files, tmp_path):
    settings = CASES[case]
    full, full_metrics = first_step_gradient(build(config(tiny_model_dir, arith_files, tmp_path / "full", **settings),
                                                   nudge=True))
    assert full_metrics.get("kl_k3", 1.0) > 1e-3  # with the KL in the loss, its term has a gradient
    assert torch.cat([g.flatten() for g in full.values()]).norm() > 1e-3
    for size in (1, 3, ROLLOUTS):
        trainer = build(config(tiny_model_dir, arith_files, tmp_path / f"micro{size}", micro_batch_size=size,
                               **settings), nudge=True)
        assert trainer.micro_batches_per_step == -(-ROLLOUTS // size)
        grads, metrics = first_step_gradient(trainer)
        assert grads.keys() == full.keys()
        for name, g in full.items():
            torch.testing.assert_close(grads[name], g, atol=1e-6, rtol=1e-5, msg=f"{name}, micro-batches of {size}")
        for key in ("loss", "reward_mean", "kl", "answer_logp", "grad_norm"):
            assert metrics[key] == pytest.approx(full_metrics[key], rel=1e-5, abs=1e-6), key


def run_two_steps(cfg) -> dict[str, torch.Tensor]:
    trainer = build(cfg)
    for step in range(2):
        trainer.step(step)
    return {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}


def test_two_steps_in_micro_batches_give_the_same_weights(tiny_model_dir, arith_files, tmp_path):
    initial = {n: p.detach().clone() for n, p in build(config(tiny_model_dir, arith_files, tmp_path / "x"))
               .policy.named_parameters()}
    whole = run_two_steps(config(tiny_model_dir, arith_files, tmp_path / "whole", seed=3))
    micro = run_two_steps(config(tiny_model_dir, arith_files, tmp_path / "micro", seed=3, micro_batch_size=3))
    assert any(not torch.equal(whole[n], initial[n]) for n in initial)  # the steps moved the weights
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.fixture(scope="module")
def rationale_files(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft-data")
    for split, numbers in {"train": range(12), "validation": range(12, 15)}.items():
        rows = [{"question": f"What is {n} + 2?", "answer": n + 2, "rationale": f"{n} + 2 = {n + 2}" * (n % 3 + 1)}
                for n in numbers]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sft_micro_batches_give_the_full_batch_gradient(tiny_model_dir, rationale_files, tmp_path):
    """SFT's loss is the mean over all the step's tokens, so micro-batches of unequal token
    counts must still weigh each token alike."""
    full, full_metrics = first_step_gradient(build(config(tiny_model_dir, rationale_files, tmp_path / "full",
                                                          questions_per_step=4), "sft"))
    grads, metrics = first_step_gradient(build(config(tiny_model_dir, rationale_files, tmp_path / "micro",
                                                      questions_per_step=4, micro_batch_size=1), "sft"))
    for name, g in full.items():
        torch.testing.assert_close(grads[name], g, atol=1e-6, rtol=1e-5, msg=name)
    assert metrics["loss"] == pytest.approx(full_metrics["loss"], rel=1e-6)


def test_micro_batch_size_is_checked():
    with pytest.raises(SettingError, match="micro_batch_size"):
        TrainConfig(micro_batch_size=-1)
