"""End to end on a tiny model: `latro train` writes every run file, stops and resumes exactly,
and `latro eval` reads the result."""

import json
import math
import signal

import pytest
import torch
import yaml
from safetensors.torch import load_file

from latro.algorithms import build_trainer
from latro.checkpoint import RunStopped
from latro.cli import main
from latro.config import TrainConfig


def train_args(model_dir, data, out, *extra):
    return ["train", "--model", str(model_dir), "--task", "jsonl",
            "--train-file", str(data / "train.jsonl"), "--validation-file", str(data / "validation.jsonl"),
            "--test-file", str(data / "test.jsonl"), "--output-dir", str(out),
            "--num-samples", "2", "--questions-per-step", "2", "--max-rationale-tokens", "8",
            "--lr", "1e-3", "--eval-every", "2", "--eval-limit", "3", "--eval-max-new-tokens", "6",
            "--save-every", "2", "--seed", "0", *extra]


def test_train_writes_run_files_then_resumes(tiny_model_dir, arith_files, tmp_path, monkeypatch):
    out = tmp_path / "run"
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "3"))
    assert (out / "config.yaml").exists()
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3]
    for key in ("reward_mean", "reward_std", "kl", "answer_logp", "rationale_tokens", "stopped_fraction",
                "loss", "grad_norm", "lr", "time_generate", "time_score", "time_update", "rollout_tokens_per_s"):
        assert all(isinstance(m[key], float) for m in lines), key
    assert "validation_accuracy" in lines[1] and "validation_accuracy" in lines[2]
    assert sorted(p.name for p in (out / "evaluations").iterdir()) == [
        "validation-step-000002.json", "validation-step-000003.json"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002", "step-000003"]
    for name in ("model", "best-model"):
        assert (out / name / "model.safetensors").exists() and (out / name / "config.json").exists()
    # The saved model is the trained one, and transformers loads it back.
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(out / "model")
    initial = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(p, initial[n]) for n, p in trained.state_dict().items() if n in initial)

    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "5", "--resume"))
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5]

    monkeypatch.chdir(tmp_path)
    main(["eval", "--model", str(out / "model"), "--task", "jsonl", "--test-file", str(arith_files / "test.jsonl"),
          "--split", "test", "--limit", "3", "--samples", "2", "--max-new-tokens", "6"])
    results = tmp_path / "eval-results" / "model"  # in the working directory, not beside the model
    report = json.loads((results / "eval-jsonl-test.json").read_text())
    assert report["results"]["jsonl"]["n"] == 3 and {"greedy", "maj@2_stderr", "pass@2_ci95"} <= set(
        report["results"]["jsonl"])
    records = [json.loads(line) for line in (results / "samples_eval-jsonl-test.jsonl").read_text().splitlines()]
    assert len(records) == 3 and len(records[0]["samples"]) == 2


def test_stopped_run_resumes_to_the_same_result(tiny_model_dir, arith_files, tmp_path):
    """Stopping mid-run (SIGTERM / Ctrl-C) saves a checkpoint and reports the stop; resuming
    reproduces the straight run."""
    def config(out, resume=False):
        return TrainConfig(model=str(tiny_model_dir), task="jsonl", train_file=str(arith_files / "train.jsonl"),
                           validation_file=str(arith_files / "validation.jsonl"), output_dir=str(out),
                           num_samples=2, questions_per_step=2, max_rationale_tokens=8, lr=1e-3,
                           eval_every=0, eval_limit=2, eval_max_new_tokens=4, save_every=100,
                           max_steps=4, resume=resume)

    build_trainer(config(tmp_path / "straight")).train()

    interrupted = build_trainer(config(tmp_path / "stopped"))
    step = interrupted.step

    def step_then_stop(i):
        metrics = step(i)
        if i == 1:
            interrupted._request_stop(signal.SIGTERM, None)
        return metrics

    interrupted.step = step_then_stop
    with pytest.raises(RunStopped) as stopped:
        interrupted.train()
    assert (stopped.value.signum, stopped.value.step, stopped.value.saved) == (signal.SIGTERM, 2, True)
    assert not (tmp_path / "stopped" / "model").exists()
    assert (tmp_path / "stopped" / "checkpoints" / "step-000002" / "trainer_state.json").exists()
    build_trainer(config(tmp_path / "stopped", resume=True)).train()

    losses = lambda run: [json.loads(l)["loss"] for l in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    assert losses("stopped") == pytest.approx(losses("straight"), rel=1e-6)
    straight = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "stopped" / "model" / "model.safetensors")
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor)


def test_existing_run_directory_is_not_overwritten(tiny_model_dir, arith_files, tmp_path, cli_error):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert "pass --resume" in cli_error(train_args(tiny_model_dir, arith_files, tmp_path / "run", "--max-steps", "1"))


def test_yaml_config_and_flags(tiny_model_dir, arith_files, tmp_path):
    (tmp_path / "run.yaml").write_text("num_samples: 3\nbeta: 0.25\nlr: 2.0e-4\n")
    import argparse

    from latro.config import add_arguments, from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig)
    cfg = from_args(TrainConfig, parser.parse_args(["--config", str(tmp_path / "run.yaml"), "--lr", "1e-5"]))
    assert (cfg.num_samples, cfg.beta, cfg.lr, cfg.questions_per_step) == (3, 0.25, 1e-5, 3)
    (tmp_path / "bad.yaml").write_text("num_sample: 3\n")
    with pytest.raises(ValueError, match="num_sample"):
        from_args(TrainConfig, parser.parse_args(["--config", str(tmp_path / "bad.yaml")]))


def test_lora_uses_the_adapter_free_model_as_reference_and_saves_merged_or_adapter(
        tiny_model_dir, arith_files, tmp_path):
    from transformers import AutoModelForCausalLM

    main(train_args(tiny_model_dir, arith_files, tmp_path / "merged", "--max-steps", "2", "--lora-r", "4",
                    "--eval-every", "0"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged" / "model")
    initial = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(p, initial[n]) for n, p in merged.state_dict().items() if n in initial)
    assert not any("lora" in n for n in merged.state_dict())

    cfg = TrainConfig(model=str(tiny_model_dir), task="jsonl", train_file=str(arith_files / "train.jsonl"),
                      validation_file=str(arith_files / "validation.jsonl"), output_dir=str(tmp_path / "adapter"),
                      num_samples=2, questions_per_step=2, max_rationale_tokens=8, lr=1e-3, lora_r=4,
                      merge_lora=False, eval_every=0, eval_limit=2, eval_max_new_tokens=4, max_steps=1)
    trainer = build_trainer(cfg)
    assert trainer.ref is None  # pi_0 is the policy with its adapter disabled: no second copy
    trainer.train()
    assert (tmp_path / "adapter" / "model" / "adapter_model.safetensors").exists()


def test_prompts_longer_than_the_context_are_skipped_and_counted(tiny_model_dir, arith_files, tmp_path):
    long_file = tmp_path / "train.jsonl"
    lines = (arith_files / "train.jsonl").read_text().splitlines()
    lines.append(json.dumps({"question": "What is " + " + ".join(["7"] * 400) + "?", "answer": "2800"}))
    long_file.write_text("\n".join(lines) + "\n")
    cfg = TrainConfig(model=str(tiny_model_dir), task="jsonl", train_file=str(long_file),
                      validation_file=str(arith_files / "validation.jsonl"), output_dir=str(tmp_path / "run"),
                      num_samples=2, questions_per_step=2, max_rationale_tokens=8)
    trainer = build_trainer(cfg)
    assert trainer.skipped_long == 1 and len(trainer.train_set) == len(lines) - 1


@pytest.mark.parametrize("reward", ["covo", "majority", "self_certainty", "gold", "latro,self_certainty:0.5"])
def test_each_reward_trains_and_logs_diagnostics(tiny_model_dir, arith_files, tmp_path, reward):
    out = tmp_path / "run"
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "2", "--reward", reward,
                    "--answer-tokens", "4", "--num-samples", "3"))
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2] and (out / "model" / "model.safetensors").exists()
    for m in lines:
        assert math.isfinite(m["loss"]) and math.isfinite(m["reward_mean"])
        assert 0 <= m["sample_accuracy"] <= 1 and 0 <= m["majority_agreement"] <= 1
        assert 0 <= m["distinct_answers"] <= 3 and "reward_auroc" in m
    if "," in reward:
        assert {"reward/latro", "reward/self_certainty"} <= set(lines[0])


def test_own_answer_reward_needs_answer_tokens(tiny_model_dir, arith_files, tmp_path, cli_error):
    message = cli_error(train_args(tiny_model_dir, arith_files, tmp_path / "run", "--reward", "majority",
                                   "--answer-tokens", "0"))
    assert message.startswith("--answer-tokens: got 0, but reward 'majority' reads the model's own answer")


@pytest.mark.parametrize("reward,whole_response", [("latro", False), ("gold", True)])
def test_trajectory_is_the_rationale_for_latro_and_the_whole_response_otherwise(
        tiny_model_dir, arith_files, tmp_path, reward, whole_response):
    from latro.scorer import FORCED, SAMPLED

    cfg = TrainConfig(model=str(tiny_model_dir), task="jsonl", train_file=str(arith_files / "train.jsonl"),
                      validation_file=str(arith_files / "validation.jsonl"), output_dir=str(tmp_path / "run"),
                      num_samples=2, questions_per_step=2, max_rationale_tokens=8, answer_tokens=4, reward=reward)
    trainer = build_trainer(cfg)
    metrics = trainer.step(0)
    batch = trainer.algorithm.last_trajectories
    rollouts = batch.rollouts
    assert metrics["stopped_fraction"] == pytest.approx(sum(r.stopped for r in rollouts) / len(rollouts))
    sampled = (batch.segments == SAMPLED).sum(1).tolist()
    expected = [r.completion_ids if whole_response else r.rationale_ids for r in rollouts]
    assert sampled == [len(e) for e in expected]
    assert ((batch.segments == FORCED).sum() == 0) == whole_response  # gold answer forced only by latro


def test_eval_on_start_logs_step_zero_and_a_restart_logs_each_step_once(tiny_model_dir, arith_files, tmp_path):
    out = tmp_path / "run"
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "2", "--eval-on-start"))
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1, 2] and set(lines[0]) == {"step", "validation_accuracy"}
    assert (out / "evaluations" / "validation-step-000000.json").exists()

    # Killed before its first checkpoint: --resume starts over and logs every step once.
    fresh = tmp_path / "killed"
    fresh.mkdir()
    (fresh / "metrics.jsonl").write_text(json.dumps({"step": 0, "validation_accuracy": 0.0}) + "\n"
                                         + json.dumps({"step": 1, "loss": 9.0}) + "\n")
    main(train_args(tiny_model_dir, arith_files, fresh, "--max-steps", "2", "--eval-on-start", "--resume"))
    again = [json.loads(l) for l in (fresh / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in again] == [0, 1, 2] and again[1]["loss"] != 9.0


def test_resume_with_other_settings_is_refused_and_config_yaml_keeps_matching_the_run(
        tiny_model_dir, arith_files, tmp_path, cli_error, capsys):
    out = tmp_path / "run"
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "1", "--eval-every", "0"))
    written = (out / "config.yaml").read_text()
    message = cli_error(train_args(tiny_model_dir, arith_files, out, "--max-steps", "1", "--eval-every", "0",
                                   "--resume", "--lr", "2e-3", "--num-samples", "3"))
    assert message.startswith(f"--resume: settings differ from the run's {out / 'config.yaml'}: "
                              "num_samples 2 -> 3, lr 0.001 -> 0.002; resume with the run's settings")
    assert (out / "config.yaml").read_text() == written
    capsys.readouterr()
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "2", "--eval-every", "0", "--resume"))
    assert "resuming with max_steps changed: 1 -> 2" in capsys.readouterr().out
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["max_steps"] == 2 and saved["lr"] == 1e-3
    assert [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
