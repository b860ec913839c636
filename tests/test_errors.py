"""Expected errors at the command line: one line `latro: error: ...` naming the setting, file
(and line) or path, exit status 2, no traceback; --debug or LATRO_DEBUG=1 shows the traceback."""

import json
import shutil

import pytest

from latro.cli import main
from latro.errors import UserError


def eval_args(model, test_file, *extra):
    return ["eval", "--model", model, "--task", "jsonl", "--test-file", test_file, "--limit", "2",
            "--samples", "0", "--max-new-tokens", "2", *extra]


def test_missing_local_model_is_named_as_such(cli_error, arith_files, tmp_path):
    for missing in (tmp_path / "no" / "such" / "model", tmp_path / "model.gguf"):
        assert cli_error(eval_args(missing, arith_files / "test.jsonl")) == \
            f"{missing}: no such model directory or file"


def test_truncated_weights_file_is_named(cli_error, tiny_model_dir, arith_files, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert cli_error(eval_args(model, arith_files / "test.jsonl")).startswith(
        f"{weights}: cannot read the weights (truncated or corrupt?)")


def test_directory_without_a_model_is_named(cli_error, arith_files, tmp_path):
    assert cli_error(eval_args(tmp_path, arith_files / "test.jsonl")).startswith(f"{tmp_path}: cannot load the model")


def test_bad_data_row_names_file_and_line(cli_error, tiny_model_dir, tmp_path):
    bad = tmp_path / "test.jsonl"
    bad.write_text(json.dumps({"question": "1 + 1?", "answer": "2"}) + "\n{\"question\": \n")
    assert cli_error(eval_args(tiny_model_dir, bad)).startswith(f"{bad}:2: malformed JSON")
    assert cli_error(eval_args(tiny_model_dir, tmp_path / "none.jsonl")) == \
        f"{tmp_path / 'none.jsonl'}: cannot read file (No such file or directory)"


def test_bad_setting_and_missing_config_file(cli_error, tmp_path):
    assert cli_error(["train", "--num-samples", "0"]) == "--num-samples: got 0, expected an integer >= 1"
    (tmp_path / "run.yaml").write_text("lr: 'fast'\n")
    assert cli_error(["train", "--config", tmp_path / "run.yaml"]) == \
        f"{tmp_path / 'run.yaml'}: lr: got 'fast', expected a number > 0"
    assert cli_error(["train", "--config", tmp_path / "none.yaml"]) == \
        f"{tmp_path / 'none.yaml'}: cannot read file (No such file or directory)"
    assert cli_error(["eval", "--task", "arithmetic"]) == \
        "latro eval needs --model: a hub id, local directory or .gguf file"
    assert cli_error(["bench", "--steps", "0"]) == "--steps: got 0, expected an integer >= 1"


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(UserError, match="--num-samples: got 0"):
        main(["train", "--num-samples", "0", "--debug"])
    monkeypatch.setenv("LATRO_DEBUG", "1")
    with pytest.raises(UserError, match="--num-samples: got 0"):
        main(["train", "--num-samples", "0"])
