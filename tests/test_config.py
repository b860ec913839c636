"""Settings: every value is type- and range-checked when a config is built, from YAML or flags,
and a bad one is one line naming the setting, the value and what is allowed; --resume refuses
settings that would change the run."""

import argparse
import dataclasses

import pytest
import yaml

from latro.config import (
    DGDiffConfig,
    EvalConfig,
    TrainConfig,
    add_arguments,
    check_resume,
    from_args,
    save_yaml,
)
from latro.errors import SettingError, UserError


def build(tmp_path, yaml_text: str | None = None, flags: tuple[str, ...] = (), cls=TrainConfig):
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls)
    argv = list(flags)
    if yaml_text is not None:
        (tmp_path / "run.yaml").write_text(yaml_text)
        argv += ["--config", str(tmp_path / "run.yaml")]
    return from_args(cls, parser.parse_args(argv))


def test_yaml_numbers_are_read_as_python_reads_them(tmp_path):
    cfg = build(tmp_path, "lr: 1e-4\nmax_steps: 1e3\nbeta: 0\nwarmup_steps: 10\nepochs: 2\n")
    assert (cfg.lr, cfg.max_steps, cfg.beta, cfg.epochs) == (1e-4, 1000, 0.0, 2.0)
    assert type(cfg.max_steps) is int and type(cfg.beta) is float and type(cfg.epochs) is float


@pytest.mark.parametrize("yaml_text, message", [
    ("lr: '1e-4'\n", "lr: got '1e-4', expected a number > 0"),
    ("num_samples: '4'\n", "num_samples: got '4', expected an integer >= 1"),
    ("max_steps: two\n", "max_steps: got 'two', expected an integer >= 0"),
    ("seed: 1.5\n", "seed: got 1.5, expected an integer >= 0 and <= 4294967295"),
    ("stop_patterns: 'The answer is'\n", "stop_patterns: got 'The answer is', expected a list of non-empty strings"),
    ("eval_on_start: 'no'\n", "eval_on_start: got 'no', expected true or false"),
    ("lr: 1e999\n", "lr: got inf, expected a number > 0"),
    ("dtype: fp8\n", "dtype: got 'fp8', expected one of float32, bfloat16, float16"),
    ("beta: -0.1\n", "beta: got -0.1, expected a number >= 0 or null"),
    ("task: mmlu\n", "task: got 'mmlu', expected one of arc_challenge, arithmetic, arithmetic_easy, dataset, gsm8k, "
                     "jsonl, math"),
    ("num_sample: 3\n", "unknown settings ['num_sample'] (did you mean num_samples?)"),
    ("lr: 1e-4\nlr: 2e-4\n", "invalid YAML (setting 'lr' is given twice)"),
    ("- lr\n", "expected a mapping of setting: value"),
])
def test_bad_yaml_value_names_file_setting_value_and_what_is_allowed(tmp_path, yaml_text, message):
    with pytest.raises(UserError) as err:
        build(tmp_path, yaml_text)
    assert str(err.value).startswith(f"{tmp_path / 'run.yaml'}") and str(err.value).endswith(message)


@pytest.mark.parametrize("flags, message", [
    (["--num-samples", "0"], "--num-samples: got 0, expected an integer >= 1"),
    (["--num-samples", "1"], ("--num-samples: got 1, expected an integer >= 2: the rloo estimator compares the "
                              "samples of each question")),
    (["--questions-per-step", "0"], "--questions-per-step: got 0, expected an integer >= 1"),
    (["--save-every", "0"], "--save-every: got 0, expected an integer >= 1"),
    (["--max-steps", "-1"], "--max-steps: got -1, expected an integer >= 0"),
    (["--max-rationale-tokens", "0"], "--max-rationale-tokens: got 0, expected an integer >= 1"),
    (["--temperature", "-1"], "--temperature: got -1.0, expected a number > 0"),
    (["--beta", "-1"], "--beta: got -1.0, expected a number >= 0 or null"),
    (["--keep-checkpoints", "0"], "--keep-checkpoints: got 0, expected an integer >= 1"),
    (["--lr", "nan"], "--lr: got nan, expected a number > 0"),
    (["--lora-dropout", "1"], "--lora-dropout: got 1.0, expected a number >= 0 and < 1"),
    (["--reward", "covo", "--answer-tokens", "0"], ("--answer-tokens: got 0, but reward 'covo' reads the model's "
                                                    "own answer after the rationale: expected an integer >= 1")),
    (["--reward", "oracle"], ("--reward 'oracle': unknown reward 'oracle'; known: covo, gold, latro, majority, "
                              "self_certainty")),
])
def test_bad_flag_value_names_flag_value_and_what_is_allowed(tmp_path, flags, message):
    with pytest.raises(UserError) as err:
        build(tmp_path, flags=tuple(flags))
    assert str(err.value) == message


def test_flag_overrides_a_bad_yaml_value_and_the_error_names_its_source(tmp_path):
    assert build(tmp_path, "num_samples: 0\n", ("--num-samples", "4")).num_samples == 4
    with pytest.raises(UserError, match=r"run\.yaml: num_samples: got 0"):
        build(tmp_path, "num_samples: 0\n", ("--lr", "1e-3"))


def test_batch_whiten_allows_one_sample_per_question(tmp_path):
    assert build(tmp_path, flags=("--num-samples", "1", "--estimator", "batch_whiten")).num_samples == 1


def test_eval_and_dgdiff_settings_are_checked_too():
    with pytest.raises(SettingError, match="split: got 'dev', expected one of train, validation, test"):
        EvalConfig(split="dev")
    with pytest.raises(SettingError, match="samples: got -1, expected an integer >= 0"):
        EvalConfig(samples=-1)
    with pytest.raises(SettingError, match="covo_max_states: got 0, expected an integer >= 1"):
        DGDiffConfig(covo_max_states=0)
    with pytest.raises(SettingError, match="discriminators: got ' , '"):
        DGDiffConfig(discriminators=" , ")


@pytest.mark.parametrize("cls", [TrainConfig, EvalConfig, DGDiffConfig])
def test_every_numeric_setting_states_its_range(cls):
    for f in dataclasses.fields(cls):
        if str(f.type).split("|")[0].strip() in ("int", "float"):
            assert {"min", "gt", "max", "lt"} & set(f.metadata), f.name


def test_resume_refuses_changed_settings_and_reports_allowed_changes(tmp_path):
    saved = tmp_path / "config.yaml"
    save_yaml(TrainConfig(model="m", lr=1e-3, num_samples=4, max_steps=3), saved)
    written = saved.read_text()
    with pytest.raises(UserError) as err:
        check_resume(TrainConfig(model="m", lr=2e-3, num_samples=2, max_steps=3, resume=True), saved)
    assert str(err.value).startswith(f"--resume: settings differ from the run's {saved}: "
                                     "num_samples 4 -> 2, lr 0.001 -> 0.002; resume with the run's settings")
    said = []
    check_resume(TrainConfig(model="m", lr=1e-3, num_samples=4, max_steps=5, eval_every=7, resume=True), saved,
                 said.append)
    assert said == ["resuming with max_steps changed: 3 -> 5", "resuming with eval_every changed: 50 -> 7"]
    assert saved.read_text() == written
    check_resume(TrainConfig(model="m", resume=True), tmp_path / "no-such-run" / "config.yaml")  # a fresh start
    assert yaml.safe_load(written)["lr"] == 1e-3
