"""`latro train` under DeepSpeed ZeRO-3, 2 processes on CPU (DS_ACCELERATOR=cpu, gloo): trains,
validates, writes best-model and the final model once from the gathered weights, and resumes.
Skipped where DeepSpeed is not installed. Each launch runs in a subprocess with a timeout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from launch import ROOT, free_port, run_launch
from safetensors.torch import load_file

pytest.importorskip("deepspeed")

TIMEOUT = 300  # seconds per launch; about 30-60 on a loaded 2-core machine


def launch_zero3(model_dir, data, out, *extra) -> str:
    port = free_port()
    command = [str(Path(sys.executable).with_name("accelerate")), "launch",
               "--config_file", str(ROOT / "configs/accelerate/zero3.yaml"), "--main_process_port", str(port),
               "-m", "latro.cli", "train", "--model", str(model_dir), "--task", "jsonl",
               "--train-file", str(data / "train.jsonl"), "--validation-file", str(data / "validation.jsonl"),
               "--output-dir", str(out), "--num-samples", "2", "--questions-per-step", "2",
               "--max-rationale-tokens", "8", "--lr", "1e-3", "--eval-every", "2", "--eval-limit", "3",
               "--eval-max-new-tokens", "6", "--save-every", "1", "--seed", "0", "--lr-schedule", "constant", *extra]
    return run_launch(command, TIMEOUT, "ZeRO-3 run", DS_ACCELERATOR="cpu", PYTHONPATH=str(ROOT))


def test_zero3_trains_validates_saves_and_resumes(tiny_model_dir, arith_files, tmp_path):
    out = tmp_path / "run"
    launch_zero3(tiny_model_dir, arith_files, out, "--max-steps", "2")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]  # written once, by the main process
    assert lines[0]["kl"] == 0.0  # the reloaded reference equals the policy before the first update
    assert isinstance(lines[0]["sampled_tokens"], int) and "validation_accuracy" in lines[1]
    initial = load_file(tiny_model_dir / "model.safetensors")
    final = load_file(out / "model" / "model.safetensors")
    assert final.keys() == initial.keys()
    assert any(not torch.equal(final[k], initial[k]) for k in final)  # trained, and the full weights
    assert all(final[k].shape == initial[k].shape for k in final)
    best = load_file(out / "best-model" / "model.safetensors")  # chosen at step 2: the same weights
    assert all(torch.equal(best[k], final[k]) for k in final)
    assert json.loads((out / "best-model" / "best.json").read_text())["step"] == 2

    output = launch_zero3(tiny_model_dir, arith_files, out, "--max-steps", "3", "--resume")
    assert "at step 2" in output
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3]
    resumed = load_file(out / "model" / "model.safetensors")
    assert any(not torch.equal(resumed[k], final[k]) for k in final)
