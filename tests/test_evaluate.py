"""Generation budgets are per question: a long question neither shortens the others' answers nor
counts as wrong; one that cannot fit the context is skipped and counted (eval and dgdiff)."""

import json

import pytest

from latro.cli import main
from latro.evaluate import evaluate
from latro.prompts import encode_prompt
from latro.tasks import Example, JsonlTask
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
    records = (tmp_path / "samples_eval.jsonl").read_text().splitlines()
    assert (report["results"]["jsonl"]["n"], report["results"]["jsonl"]["skipped"], len(records)) == (2, 1, 3)
    assert report["n-samples"] == {"jsonl": {"original": 3, "effective": 2}}

    main(["dgdiff", *common, "--candidates", "2", "--answer-tokens", "2", "--discriminators", "latro,majority",
          "--output", str(tmp_path / "dg.json")])
    assert "1 skipped" in capsys.readouterr().out
    report = json.loads((tmp_path / "dg.json").read_text())
    assert (report["n"], report["skipped"], len(report["records"])) == (2, 1, 2)

    data.write_text(json.dumps(rows[1]) + "\n")
    assert cli_error(["eval", *common]) == "none of the 1 questions fits the model's 512-token context"


def test_standard_error_and_bootstrap_interval():
    from latro.evaluate import summarize

    records = [{"scores": {"greedy": i < 3, "pass@2": True}} for i in range(10)] + [{"skipped": "too long"}]
    result = summarize(records, seed=0)
    assert (result["n"], result["skipped"], result["metrics"]["greedy"]) == (10, 1, 0.3)
    assert result["stderr"]["greedy"] == pytest.approx((0.3 * 0.7 / 9) ** 0.5)  # = std(ddof=1) / sqrt(n)
    low, high = result["ci95"]["greedy"]
    assert 0.0 <= low < 0.3 < high <= 0.7 and result["ci95"] == summarize(records, seed=0)["ci95"]
    assert result["stderr"]["pass@2"] == 0.0 and result["ci95"]["pass@2"] == [1.0, 1.0]


def test_shards_cover_every_question_once_and_gather_in_order(tiny_model, tokenizer):
    """Two processes simulated: each evaluates its shard; the gathered records equal one process's."""
    from types import SimpleNamespace

    from latro.evaluate import evaluate, gather_records, shard

    assert [shard(5, rank, 2) for rank in (0, 1)] == [[0, 2, 4], [1, 3]]
    task = JsonlTask()
    examples = [Example(f"q{i}", f"What is {i} + 1?", str(i + 1)) for i in range(5)]
    whole = evaluate(tiny_model, tokenizer, task, examples, max_new_tokens=4, batch_size=2)
    parts = [evaluate(tiny_model, tokenizer, task, examples, max_new_tokens=4, batch_size=2,
                      accelerator=SimpleNamespace(process_index=rank, num_processes=2))["records"]
             for rank in (0, 1)]
    indexed = [(i, r) for rank, records in enumerate(parts) for i, r in zip(shard(5, rank, 2), records)]
    assert gather_records(indexed[::-1]) == whole["records"]
    assert [r["id"] for r in gather_records(indexed)] == [f"q{i}" for i in range(5)]


def test_exact_mcnemar_against_the_binomial_by_hand():
    from latro.evaluate import mcnemar_exact

    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0
    # 10 changed questions, 9 gained and 1 lost: P(X <= 1) = (1 + 10) / 1024 for X ~ Bin(10, 1/2), both tails
    assert mcnemar_exact(9, 1) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(1, 9) == mcnemar_exact(9, 1)
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)  # five of five: not yet significant at 0.05
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)


def test_eval_against_a_baseline_counts_gains_and_losses(tiny_model_dir, tmp_path, capsys, cli_error):
    data = tmp_path / "test.jsonl"
    rows = [{"question": f"What is {n} + 1?", "answer": str(n + 1)} for n in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["eval", "--model", str(tiny_model_dir), "--task", "jsonl", "--test-file", str(data),
              "--max-new-tokens", "4", "--samples", "0"]
    main([*common, "--output", str(tmp_path / "base.json")])
    # A baseline that got questions 0-2 right and 3-5 wrong, whatever the model answered.
    samples = tmp_path / "samples_base.jsonl"
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    now = [r["scores"]["greedy"] for r in records]
    for i, r in enumerate(records):
        r["scores"]["greedy"] = i < 3
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    main([*common, "--baseline", str(tmp_path / "base.json"), "--output", str(tmp_path / "after.json")])
    gains, losses = sum(now[3:]), sum(not c for c in now[:3])
    paired = json.loads((tmp_path / "after.json").read_text())["results"]["jsonl"]["vs_baseline"]
    assert (paired["n"], paired["gains"], paired["losses"]) == (6, gains, losses)
    assert paired["baseline_greedy"] == 0.5 and paired["greedy"] == pytest.approx(sum(now) / 6)
    assert f"{gains} gained, {losses} lost" in capsys.readouterr().out

    assert cli_error([*common, "--baseline", str(data)]).startswith(f"--baseline {data}: not the results JSON")
    samples.write_text(json.dumps(records[0]) + "\n")  # the baseline scored only the first question
    assert cli_error([*common, "--baseline", str(tmp_path / "base.json")]) == (
        f"--baseline {tmp_path / 'base.json'}: 5 of the 6 questions evaluated are not scored there (first: "
        f"{records[1]['id']}); compare evaluations of the same split and task")
