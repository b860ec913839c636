"""The math task: MATH records, \\boxed{} answers, equivalence by math-verify, hub and local sources."""

import json
import re
import sys
from pathlib import Path

import pytest

import latro
from latro.config import EvalConfig
from latro.tasks import MATH, DataError, Example, task_from_config
from latro.tasks.hendrycks_math import MATH500, SUBJECTS, last_boxed

SAMPLE = Path(latro.__file__).parent / "tasks" / "data" / "math"


def naive_last_boxed(solution: str) -> str:
    """The last \\boxed{...}, braces counted by hand from the box's opening brace."""
    start = solution.rindex("\\boxed{") + len("\\boxed{")
    depth, end = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(solution[end], 0)
        end += 1
    return solution[start : end - 1]


def test_sample_splits_and_gold_answers():
    task = MATH(str(SAMPLE))
    rows = {s: [json.loads(line) for line in (SAMPLE / f"{s}.jsonl").read_text().splitlines()]
            for s in ("train", "test")}
    assert all(set(r) == {"problem", "solution", "level", "type"} for rs in rows.values() for r in rs)
    train, validation, test = (task.load(s) for s in ("train", "validation", "test"))
    assert (len(train), len(validation), len(test)) == (13, 1, 8)  # a tenth of 14 held out, at least 1
    assert {e.question for e in train}.isdisjoint(e.question for e in validation)
    by_problem = {r["problem"]: r for rs in rows.values() for r in rs}
    for ex in train + validation + test:
        assert ex.answer == naive_last_boxed(by_problem[ex.question]["solution"])
        assert ex.rationale == by_problem[ex.question]["solution"]


def test_forced_answer_parses_back_and_is_correct():
    task = MATH(str(SAMPLE))
    for ex in task.load("test"):
        text = f"Some reasoning. {task.answer_text(ex)}"
        assert text.endswith(f"The answer is $\\boxed{{{ex.answer}}}$.")
        assert task.parse_answer(text, ex) == ex.answer and task.is_correct(ex.answer, ex)


@pytest.mark.parametrize("completion, answer, correct", [
    ("So x = 1/2. The answer is $\\boxed{0.5}$.", "0.5", True),
    ("The answer is \\frac12.", "\\frac12", True),
    ("The answer is: **$\\dfrac{1}{2}$**", "\\dfrac{1}{2}", True),
    ("We get \\boxed{\\frac{2}{4}} in the end", "\\frac{2}{4}", True),
    ("The answer is $\\boxed{\\frac{1}{3}}$.", "\\frac{1}{3}", False),
    ("The answer is $\\boxed{-\\frac{1}{2}}$.", "-\\frac{1}{2}", False),
    ("The answer is 2. Then 1/2. Then 3.", "2", False),  # the sentence after the marker, not any number in it
    ("The answer is $\\frac{1}{2}$ of a cake.", "\\frac{1}{2}", True),
    ("I do not know.", None, False),
])
def test_answers_are_read_from_the_box_and_compared_by_value(completion, answer, correct):
    ex = Example("x", "What is half of one?", "\\frac{1}{2}")
    parsed = MATH(str(SAMPLE)).parse_answer(completion, ex)
    assert parsed == answer and MATH(str(SAMPLE)).is_correct(parsed, ex) is correct


def test_last_boxed_balances_braces_and_reads_an_unbraced_box():
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{a^{2}}{b}}") == "\\frac{a^{2}}{b}"
    assert last_boxed("so \\boxed 5.") == "5" and last_boxed("\\fbox{7}") == "7"
    assert last_boxed("no box") is None and last_boxed("\\boxed{unclosed") is None


def test_a_solution_without_a_box_names_its_line(tmp_path):
    (tmp_path / "test.jsonl").write_text(json.dumps({"problem": "p", "solution": "s", "level": "Level 1",
                                                     "type": "Algebra"}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'test.jsonl'}:1: solution has no \\boxed{{...}}")):
        MATH(str(tmp_path)).load("test")


def test_missing_math_verify_is_one_clear_error(monkeypatch, cli_error):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # import fails as if not installed
    error = cli_error(["eval", "--model", "unused", "--task", "math", "--data-dir", SAMPLE])
    assert error == ("the math task checks answers with math-verify, which is not installed: "
                     "pip install 'latro[math]' (or pip install math-verify)")


def test_hub_reads_math500_for_test_and_every_subject_for_train(monkeypatch):
    import datasets

    asked = []
    row = {"problem": "1+1?", "solution": "It is $\\boxed{2}$.", "level": "Level 1", "type": "Algebra"}

    def load_dataset(name, config=None, split=None):
        asked.append((name, config, split))
        return [dict(row, answer="2", unique_id="test/x.json")] if name == MATH500 else [row] * 20

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    test = task_from_config(EvalConfig(task="math")).load("test")
    assert asked == [(MATH500, None, "test")] and [e.id for e in test] == ["test/x.json"]
    asked.clear()
    full = task_from_config(EvalConfig(task="math", math_test="full")).load("test")
    assert asked == [("EleutherAI/hendrycks_math", s, "test") for s in SUBJECTS] and len(full) == 140
    train = MATH().load("train")
    assert len(train) == 140 - 14 and all(e.answer == "2" for e in train)


def test_latro_eval_on_the_sample(tmp_path, monkeypatch, capsys):
    from latro.cli import main

    monkeypatch.chdir(tmp_path)
    main(["eval", "--model", str(Path(latro.__file__).parent / "demo" / "model"), "--task", "math",
          "--data-dir", str(SAMPLE), "--limit", "2", "--samples", "0", "--max-new-tokens", "8"])
    report = json.loads(next((tmp_path / "eval-results").rglob("eval-math-test.json")).read_text())
    assert report["results"]["math"]["n"] == 2
    assert report["configs"]["math"]["prompt"]["first_prompt"].rstrip().endswith("'The answer is $\\boxed{answer}$'.")
