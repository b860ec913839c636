"""The built-in demonstration: the shipped model loads and generates, and a short default run
writes a complete run directory with plots and a before/after table."""

import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from latro import demo
from latro.config import TrainConfig
from latro.prompts import encode_prompt
from latro.rollout import sample
from latro.tasks import get_task


def test_shipped_model_loads_and_generates():
    model = AutoModelForCausalLM.from_pretrained(demo.MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(demo.MODEL_DIR)
    size = sum(f.stat().st_size for f in demo.MODEL_DIR.iterdir())
    assert size < 21 * 2**20 and (demo.MODEL_DIR / "model.safetensors").exists()
    task = get_task("arithmetic")
    examples = task.load("test")[:4]
    prompts = [encode_prompt(tokenizer, task, ex) for ex in examples]
    out = sample(model, tokenizer, prompts, num_samples=1, max_new_tokens=64, temperature=0.0,
                 stop_patterns=[], stop_token_ids={tokenizer.eos_token_id})
    # A pre-trained model, not a random one: it ends its answers and states them in the task's format.
    assert all(r.stop is not None for r in out)
    assert all(task.parse_answer(r.completion, ex) is not None and "The answer is" in r.completion
               for r, ex in zip(out, examples))


def test_short_default_run(tmp_path, capsys):
    cfg = TrainConfig(**{**demo.PRESET, "output_dir": str(tmp_path / "demo"), "max_steps": 2,
                         "questions_per_step": 2, "num_samples": 4, "eval_every": 1, "eval_limit": 8})
    summary = demo.run_demo(cfg, test_limit=8)
    printed = capsys.readouterr().out
    assert "No --model given" in printed and "after latro (2 steps)" in printed
    run = tmp_path / "demo"
    for name in ("accuracy.png", "reward.png", "rationale_length.png", "demo-summary.json", "metrics.jsonl",
                 "config.yaml", "evaluations/test-base.json", "evaluations/test-final.json",
                 "model/model.safetensors"):
        assert (run / name).exists(), name
    assert summary["test_questions"] == 8 and set(summary["base"]) == {"greedy", "maj@8", "pass@8"}
    base = json.loads((run / "evaluations" / "test-base.json").read_text())
    assert base["metrics"] == summary["base"]
    parts = summary["base_steps"]
    assert parts["with_steps"]["samples"] + parts["without_steps"]["samples"] == 8 * 8
