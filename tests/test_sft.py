"""`latro sft`: the loss is the plain next-token loss on gold rationale + answer, and a run
writes the same files as `latro train`."""

import json

import pytest
import torch

from latro.algorithms import build_trainer
from latro.cli import main
from latro.config import TrainConfig
from latro.prompts import sft_target_ids


@pytest.fixture(scope="module")
def rationale_files(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft-data")
    for split, numbers in {"train": range(0, 12), "validation": range(12, 15), "test": range(15, 18)}.items():
        with open(path / f"{split}.jsonl", "w") as f:
            for n in numbers:
                rationale = None if n == 3 else f"{n} + 2 = {n + 2}"  # one question lacks a rationale
                f.write(json.dumps({"question": f"What is {n} + 2?", "answer": n + 2, "rationale": rationale}) + "\n")
    return path


def config(model_dir, data, out, **kw):
    return TrainConfig(model=str(model_dir), task="jsonl", train_file=str(data / "train.jsonl"),
                       validation_file=str(data / "validation.jsonl"), output_dir=str(out),
                       questions_per_step=4, lr=1e-2, lr_schedule="constant", eval_every=0, eval_limit=2,
                       max_rationale_tokens=16, eval_max_new_tokens=4, **kw)


def test_sft_loss_is_the_next_token_loss_of_the_gold_solution(tiny_model_dir, rationale_files, tmp_path):
    trainer = build_trainer(config(tiny_model_dir, rationale_files, tmp_path / "run", max_steps=1), "sft")
    assert trainer.algorithm.skipped_no_rationale == 1 and len(trainer.train_set) == 11
    indices = trainer.batch_indices(0)
    # Reference: transformers' own loss with the prompt masked, computed before the update.
    expected = []
    for i in indices:
        ex, prompt = trainer.train_set[i], trainer.prompts[i]
        rationale, answer = sft_target_ids(trainer.tokenizer, trainer.task, ex, prompt)
        assert answer[-1] == trainer.tokenizer.eos_token_id
        assert ex.rationale in trainer.tokenizer.decode(rationale)
        ids = torch.tensor([prompt + rationale + answer])
        labels = ids.clone()
        labels[0, : len(prompt)] = -100
        with torch.no_grad():
            out = trainer.policy(input_ids=ids, labels=labels)
        expected.append((out.loss.item(), len(rationale) + len(answer)))
    mean_nll = sum(l * n for l, n in expected) / sum(n for _, n in expected)
    metrics = trainer.step(0)
    assert metrics["loss"] == pytest.approx(mean_nll, rel=1e-5)


def test_sft_run_lowers_the_loss_and_writes_a_model(tiny_model_dir, rationale_files, tmp_path):
    out = tmp_path / "run"
    main(["sft", "--model", str(tiny_model_dir), "--task", "jsonl",
          "--train-file", str(rationale_files / "train.jsonl"),
          "--validation-file", str(rationale_files / "validation.jsonl"), "--output-dir", str(out),
          "--questions-per-step", "4", "--lr", "1e-2", "--lr-schedule", "constant", "--max-steps", "12",
          "--max-rationale-tokens", "16", "--eval-every", "0", "--eval-limit", "2", "--eval-max-new-tokens", "4",
          "--save-every", "6"])
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and lines[-1]["loss"] < 0.7 * lines[0]["loss"]
    assert (out / "model" / "model.safetensors").exists() and (out / "checkpoints" / "step-000012").exists()
