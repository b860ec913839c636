"""Every preset under configs/ loads and validates: the paper's runs (configs/paper) through the
same path as `latro train --config FILE`, the launch configs (configs/accelerate) through
accelerate's own config classes and launcher options. The README's commands name real files."""

import argparse
import re
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType, PrecisionType

from latro import config as C
from latro.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted((ROOT / "configs" / "paper").glob("*.yaml"))
ACCELERATE = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
MODELS = {"phi35": "microsoft/Phi-3.5-mini-instruct", "mistral7b": "mistralai/Mistral-7B-Instruct-v0.3",
          "llama31-8b": "meta-llama/Llama-3.1-8B-Instruct"}
TASKS = {"gsm8k": ("gsm8k", 0.05, 6), "arc": ("arc_challenge", 0.25, 12)}  # task, beta, epochs (the paper)


def load_as_the_cli_does(path: Path) -> C.TrainConfig:
    parser = argparse.ArgumentParser()
    C.add_arguments(parser, C.TrainConfig)
    return C.from_args(C.TrainConfig, parser.parse_args(["--config", str(path)]))


def test_the_six_paper_runs_are_there():
    assert {p.stem for p in PAPER} == {f"{m}-{t}" for m in MODELS for t in TASKS}


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_preset_holds_the_papers_settings(path):
    cfg = load_as_the_cli_does(path)  # unknown settings and bad values raise UserError
    model, task = path.stem.rsplit("-", 1)
    assert (cfg.model, cfg.task) == (MODELS[model], TASKS[task][0])
    assert (cfg.beta, cfg.epochs) == TASKS[task][1:]
    assert (cfg.num_samples, cfg.questions_per_step, cfg.max_rationale_tokens) == (16, 3, 500)
    assert (cfg.lr, cfg.warmup_steps, cfg.lr_schedule, cfg.temperature) == (5e-7, 0, "linear", 1.0)
    assert (cfg.reward, cfg.estimator, cfg.kl_in, cfg.nonstop_gamma, cfg.answer_weight) == \
        ("latro", "rloo", "reward", 2.0, 1.0)
    assert cfg.dtype == "bfloat16" and not cfg.pure_dtype and cfg.lora_r == 0  # full fine-tuning, mixed bf16
    assert cfg.output_dir == f"runs/paper/{path.stem}"
    assert f"--config configs/paper/{path.name}" in path.read_text()  # its own launch command


def test_a_misspelt_setting_in_a_preset_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs" / "paper" / "phi35-gsm8k.yaml").read_text().replace("num_samples:", "num_sample:"))
    with pytest.raises(UserError, match=r"unknown settings \['num_sample'\] \(did you mean num_samples\?\)"):
        load_as_the_cli_does(bad)


def check_accelerate_config(path: Path) -> None:
    """As `accelerate launch --config_file` reads it: accelerate's ClusterConfig (unknown top-level
    keys raise), a known distributed type and precision, and every key of deepspeed_config /
    fsdp_config an option of the launcher (which would otherwise set it silently and ignore it)."""
    cluster = load_config_from_file(str(path))
    assert isinstance(cluster.distributed_type, DistributedType)
    assert cluster.mixed_precision in [p.value for p in PrecisionType]
    options = {action.dest for action in launch_command_parser()._actions}
    for section in ("deepspeed_config", "fsdp_config"):
        unknown = set(getattr(cluster, section) or {}) - options
        assert not unknown, f"{path.name}: {section} keys that accelerate launch does not know: {sorted(unknown)}"


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.stem)
def test_accelerate_preset_loads_in_accelerate(path):
    check_accelerate_config(path)


def test_the_accelerate_check_catches_a_wrong_key(tmp_path):
    good = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "DEEPSPEED", "mixed_precision": "bf16",
            "num_processes": 2, "deepspeed_config": {"zero_stage": 3, "offload_param_device": "none"}}
    path = tmp_path / "zero3.yaml"
    path.write_text(yaml.safe_dump(good))
    check_accelerate_config(path)
    path.write_text(yaml.safe_dump({**good, "deepspeed_config": {"zero_stages": 3}}))
    with pytest.raises(AssertionError, match="zero_stages"):
        check_accelerate_config(path)
    path.write_text(yaml.safe_dump({**good, "num_proceses": 2}))
    with pytest.raises(ValueError, match="unknown keys"):
        check_accelerate_config(path)


def test_readme_commands_name_existing_presets():
    named = set(re.findall(r"configs/[\w./-]+\.yaml", (ROOT / "README.md").read_text()))
    assert {f"configs/paper/{p.name}" for p in PAPER} <= named  # one command per paper run
    missing = [name for name in named if not (ROOT / name).exists()]
    if not ACCELERATE:  # configs/accelerate/ comes with the sharding work; before it is merged, only it may be absent
        missing = [name for name in missing if not name.startswith("configs/accelerate/")]
    assert not missing


def test_the_smollm2_recipe_loads_with_the_measured_settings():
    cfg = load_as_the_cli_does(ROOT / "configs" / "smollm2-arithmetic_easy.yaml")
    assert (cfg.model, cfg.task, cfg.reward) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "arithmetic_easy", "latro")
    assert (cfg.num_samples, cfg.questions_per_step, cfg.max_rationale_tokens, cfg.temperature) == (8, 2, 128, 1.0)
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lr, cfg.beta, cfg.max_steps) == (16, 32, 1e-4, 0.05, 60)
    assert (cfg.eval_every, cfg.eval_limit, cfg.eval_on_start) == (10, 100, True)
    assert cfg.system_prompt.endswith("End with: The answer is <number>.")
