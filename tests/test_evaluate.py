"""Generation budgets are per question: a long question neither shortens the others' answers nor
counts as wrong; one that cannot fit the context is skipped and counted (eval and dgdiff)."""

import json

import pytest

from latro.cli import main
from latro.evaluate import evaluate
from latro.prompts import encode_prompt
from latro.tasks import Example
from latro.tasks.gsm8k import NumericTask

TOO_LONG = "What is " + " + ".join(["7"] * 400) + "?"  # > 512 tokens, the tiny model's context


def nearly_filling(tokenizer, task, room: int) -> str:
    """A question whose prompt leaves between 1 and `room` tokens of the tiny model's 512."""
    for n in range(1, 400):
        question = "What is " + " + ".join(["7"] * n) + "?"
        if 512 - room <= len(encode_prompt(tokenizer, task, Example("x", question, "0"))) < 512:
            return question
    raise AssertionError("no question of that length")


def test_a_long_question_neither_shortens_the_others_nor_counts_as_wrong(tokenizer, tiny_model):
    task = NumericTask()
    short = [Example(f"s{i}", f"Tom has {i} apples and buys 2 more. How many apples does he have?", str(i + 2))
             for i in range(3)]
    tight = Example("tight", nearly_filling(tokenizer, task, 6), "7")
    examples = [short[0], Example("long", TOO_LONG, "2800"), short[1], tight, short[2]]
    kw = {"max_new_tokens": 12, "batch_size": 8, "seed": 0}
    mixed = evaluate(tiny_model, tokenizer, task, examples, samples=2, **kw)
    alone = evaluate(tiny_model, tokenizer, task, short, samples=0, **kw)  # greedy: the same without samples
    by_id = {r["id"]: r for r in mixed["records"]}
    for record in alone["records"]:  # the same answers as without the long questions in their batch
        assert by_id[record["id"]]["greedy"]["completion"] == record["greedy"]["completion"]
    assert len(tokenizer(alone["records"][0]["greedy"]["completion"]).input_ids) > 6
    assert (mixed["n"], mixed["skipped"]) == (4, 1)
    assert by_id["long"]["skipped"] == "prompt leaves no room in the 512-token context"
    assert "greedy" not in by_id["long"] and "greedy" in by_id["tight"]
    correct = sum(r["greedy"]["correct"] for r in mixed["records"] if "greedy" in r)
    assert mixed["metrics"]["greedy"] == pytest.approx(correct / 4)  # over the questions evaluated


def test_eval_and_dgdiff_report_skipped_questions(tiny_model_dir, tmp_path, capsys, cli_error):
    data = tmp_path / "test.jsonl"
    rows = [{"question": "What is 3 + 4?", "answer": "7"}, {"question": TOO_LONG, "answer": "2800"},
            {"question": "What is 5 + 1?", "answer": "6"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--model", str(tiny_model_dir), "--task", "jsonl", "--test-file", str(data), "--max-new-tokens", "4"]
    main(["eval", *common, "--samples", "0", "--output", str(tmp_path / "eval.json")])
    assert "jsonl test: 3 questions, 1 skipped (prompt longer than the model's context); the numbers are over " \
           "the 2 evaluated" in capsys.readouterr().out
    report = json.loads((tmp_path / "eval.json").read_text())
    assert (report["n"], report["skipped"], len(report["records"])) == (2, 1, 3)

    main(["dgdiff", *common, "--candidates", "2", "--answer-tokens", "2", "--discriminators", "latro,majority",
          "--output", str(tmp_path / "dg.json")])
    assert "1 skipped" in capsys.readouterr().out
    report = json.loads((tmp_path / "dg.json").read_text())
    assert (report["n"], report["skipped"], len(report["records"])) == (2, 1, 2)

    data.write_text(json.dumps(rows[1]) + "\n")
    assert cli_error(["eval", *common]) == "none of the 1 questions fits the model's 512-token context"
