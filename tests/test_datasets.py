"""The dataset task: every local format through datasets.load_dataset, column mapping, GSM8K-style
answers, held-out validation, and rows that cannot be used named by file and line (or row). Offline."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from latro.config import EvalConfig
from latro.tasks import DataError, DatasetTask, task_from_config
from latro.tasks.jsonl import Fields, held_out_size

ROWS = [{"question": "What is 2 + 3?", "answer": "5"},
        {"question": "Capital of France?", "answer": "Paris"},
        {"question": "Which is red?", "answer": "B", "choices": json.dumps(["grass", "blood", "sky"])}]


def _write(path: Path, rows: list[dict]) -> Path:
    """`rows` in the format of `path`'s extension, as a user's own tools would write it."""
    frame = pd.DataFrame(rows)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet", ".arrow"])
def test_every_format_loads_the_same_examples(tmp_path, suffix):
    path = _write(tmp_path / f"qa{suffix}", ROWS)
    task = DatasetTask(test_file=str(path))
    numeric, text, choice = task.load("test")
    assert (numeric.answer, text.answer, choice.answer) == ("5", "Paris", "B")
    assert choice.choices == (("A", "grass"), ("B", "blood"), ("C", "sky")) and text.choices == ()
    assert task.is_correct(task.parse_answer("2 + 3 = 5. The answer is 5.", numeric), numeric)
    assert numeric.id == "test-" + ("1" if suffix in (".jsonl", ".json", ".parquet", ".arrow") else "2")


@pytest.mark.parametrize("suffix, place", [(".jsonl", ":2"), (".json", ": row 2"), (".csv", ":3"),
                                           (".parquet", ": row 2"), (".arrow", ": row 2")])
def test_a_bad_row_is_named_by_line_or_row_in_every_format(tmp_path, suffix, place):
    path = _write(tmp_path / f"qa{suffix}", [ROWS[0], {"question": " ", "answer": "1"}])
    with pytest.raises(DataError) as err:
        DatasetTask(test_file=str(path)).load("test")
    assert str(err.value) == f"{path}{place}: field 'question' is empty"


def test_csv_line_counts_quoted_cells_over_several_lines(tmp_path):
    path = _write(tmp_path / "qa.csv", [{"question": "Line one\nline two?", "answer": "1"},
                                        {"question": "Pick", "answer": "A", "choices": '["only"]'}])
    with pytest.raises(DataError) as err:
        DatasetTask(test_file=str(path)).load("test")
    assert str(err.value) == f"{path}:4: a multiple-choice question needs at least 2 choices, got 1"


def test_csv_keeps_answers_as_written(tmp_path):
    path = _write(tmp_path / "qa.csv", [{"question": "Agent?", "answer": "007 Bond"}, {"question": "x", "answer": "1"}])
    assert DatasetTask(test_file=str(path)).load("test")[0].answer == "007 Bond"


def test_json_checks_that_datasets_cannot_see(tmp_path):
    nan = tmp_path / "nan.jsonl"
    nan.write_text('{"question": "q", "answer": "1"}\n\n{"question": "q", "answer": NaN}\n')
    with pytest.raises(DataError, match=rf"^{nan}:3: NaN is not a number$"):
        DatasetTask(train_file=str(nan)).load("train")
    array = tmp_path / "array.json"
    array.write_text('[{"question": "q", "answer": 1},\n 3]')
    with pytest.raises(DataError, match=rf"^{array}: row 2: expected a JSON object, got int$"):
        DatasetTask(train_file=str(array)).load("train")
    array.write_text('[{"question": "q",\n "answer": }]')
    with pytest.raises(DataError, match=rf"^{array}:2: malformed JSON"):
        DatasetTask(train_file=str(array)).load("train")


def test_unknown_format_and_missing_file_are_one_line(tmp_path):
    with pytest.raises(DataError, match=r"qa\.txt: unknown data format; expected one of \.json, \.jsonl, \.csv"):
        DatasetTask(test_file=str(tmp_path / "qa.txt")).load("test")
    with pytest.raises(DataError, match=r"none\.parquet: cannot read file \(No such file or directory\)$"):
        DatasetTask(dataset=str(tmp_path / "none.parquet")).load("test")


def test_column_mapping_and_gsm8k_style_answers(tmp_path):
    rows = [{"problem": f"{n} + 1?", "solution": f"{n} + 1 = <<{n}+1={n + 1}>>{n + 1}\n#### {n + 1:,}"}
            for n in range(998, 1008)]
    path = _write(tmp_path / "math.parquet", rows)
    cfg = EvalConfig(dataset=str(path), question_field="problem", answer_field="solution", test_split="train")
    task = task_from_config(cfg)
    assert cfg.task == "dataset" and isinstance(task, DatasetTask)
    first = task.load("test")[0]
    assert (first.question, first.answer, first.rationale) == ("998 + 1?", "999", "998 + 1 = 999")
    assert task.load("test")[2].answer == "1001"  # from "#### 1,001"
    with pytest.raises(DataError, match=r"math\.parquet: row 1: missing field 'question'"):
        DatasetTask(dataset=str(path), splits={"test": "train"}).load("test")


def test_hub_style_choices_column(tmp_path):
    row = {"id": "Mercury_1", "question": "Which is a gas?", "answerKey": "2",
           "choices": {"label": ["1", "2"], "text": ["ice", "steam"]}}
    path = _write(tmp_path / "arc.jsonl", [row])
    ex, = DatasetTask(test_file=str(path), fields=Fields(answer="answerKey")).load("test")
    assert (ex.id, ex.answer, ex.choices) == ("Mercury_1", "2", (("1", "ice"), ("2", "steam")))


def test_directory_splits_by_file_name_and_holds_out_validation(tmp_path):
    train = [{"question": f"{n} + {n}?", "answer": str(2 * n)} for n in range(25)]
    _write(tmp_path / "train.jsonl", train)
    _write(tmp_path / "test.csv", ROWS[:2])
    task = DatasetTask(dataset=str(tmp_path))
    kept, validation, test = task.load("train"), task.load("validation"), task.load("test")
    assert held_out_size(25) == 2 and (len(kept), len(validation), len(test)) == (23, 2, 2)
    assert not {ex.id for ex in kept} & {ex.id for ex in validation}
    assert [ex.id for ex in DatasetTask(dataset=str(tmp_path)).load("validation")] == [ex.id for ex in validation]
    assert (held_out_size(2), held_out_size(7473)) == (1, 500)
    _write(tmp_path / "validation.jsonl", train[:3])
    assert len(DatasetTask(dataset=str(tmp_path)).load("train")) == 25


def test_missing_split_and_dataset_offline_are_one_line(tmp_path):
    path = _write(tmp_path / "qa.jsonl", ROWS)
    with pytest.raises(ValueError, match=r"has no split 'test' \(its splits: train\); pass --test-split$"):
        DatasetTask(dataset=str(path)).load("test")
    with pytest.raises(DataError, match=r"qa\.jsonl: no split 'dev'; its splits: train$"):
        DatasetTask(dataset=str(path), splits={"validation": "dev"}).load("validation")
    with pytest.raises(DataError, match=r"^no-such-user/no-such-dataset: cannot load the dataset [^\n]*$"):
        DatasetTask(dataset="no-such-user/no-such-dataset").load("test")


def test_dataset_setting_selects_the_task_or_is_refused(cli_error, tmp_path):
    assert cli_error(["eval", "--model", "m", "--task", "arc_challenge", "--dataset", "x.jsonl"]) == \
        "--dataset: task 'arc_challenge' reads its own data; --dataset needs --task dataset"


def test_eval_cli_on_a_csv_dataset_writes_a_comparable_report(tiny_model_dir, tmp_path, monkeypatch):
    from latro.cli import main

    path = _write(tmp_path / "qa.csv", ROWS)
    monkeypatch.chdir(tmp_path)
    main(["eval", "--model", str(tiny_model_dir), "--dataset", str(path), "--test-split", "train",
          "--samples", "0", "--max-new-tokens", "4"])
    out = tmp_path / "eval-results" / tiny_model_dir.name
    report = json.loads((out / "eval-dataset-test.json").read_text())
    assert set(report) >= {"results", "configs", "versions", "n-samples", "date"} and report["task"] == "dataset"
    assert set(report["results"]["dataset"]) == {"greedy", "greedy_stderr", "greedy_ci95", "n", "skipped"}
    config = report["configs"]["dataset"]
    assert config["generation"]["max_new_tokens"] == 4 and config["settings"]["dataset"] == str(path)
    assert config["prompt"]["first_question"] == "What is 2 + 3? Let's think step by step."
    assert report["versions"]["torch"] and report["versions"]["transformers"]
    records = [json.loads(line) for line in (out / "samples_eval-dataset-test.jsonl").read_text().splitlines()]
    assert [r["gold"] for r in records] == ["5", "Paris", "B"]
