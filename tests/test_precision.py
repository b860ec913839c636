"""bf16 that trains: --dtype bfloat16 computes in bf16 on float32 master weights (mixed
precision), so the paper's lr 5e-7 moves the weights; pure bf16 weights only on request, with a
warning when lr is too small to move them."""

import pytest
import torch

from latro import demo
from latro.algorithms import build_trainer
from latro.config import TrainConfig


def config(out, **kw):
    """The shipped demo model (tied embeddings: every weight gets a gradient) at the paper's lr."""
    return TrainConfig(model=str(demo.MODEL_DIR), task="arithmetic", output_dir=str(out), num_samples=2,
                       questions_per_step=2, max_rationale_tokens=16, lr=5e-7, eval_every=0, max_steps=2,
                       save_every=100, **kw)


def changed_fraction(trainer, initial) -> float:
    current = dict(trainer.policy.named_parameters())
    changed = sum(int((current[n].float() != initial[n].float()).sum()) for n in initial)
    return changed / sum(p.numel() for p in initial.values())


def train_two_steps(trainer):
    initial = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    for step in range(2):
        trainer.step(step)
    return initial


@pytest.mark.parametrize("micro_batch_size", [0, 1])  # the whole step in one pass, or a rollout at a time
def test_bf16_mixed_precision_moves_the_weights_at_the_papers_lr(tmp_path, micro_batch_size):
    trainer = build_trainer(config(tmp_path / "mixed", dtype="bfloat16", micro_batch_size=micro_batch_size))
    assert trainer.accelerator.mixed_precision == "bf16"
    assert all(p.dtype == torch.float32 for p in trainer.policy.parameters())  # master weights
    initial = train_two_steps(trainer)
    assert changed_fraction(trainer, initial) > 0.9


def test_pure_bf16_weights_warn_that_the_papers_lr_cannot_move_them(tmp_path, capsys):
    trainer = build_trainer(config(tmp_path / "pure", dtype="bfloat16", pure_dtype=True))
    assert trainer.accelerator.mixed_precision == "no"
    assert all(p.dtype == torch.bfloat16 for p in trainer.policy.parameters())
    assert "--pure-dtype with lr 5e-07" in capsys.readouterr().out
    initial = train_two_steps(trainer)
    assert changed_fraction(trainer, initial) < 0.1  # what the warning is about
