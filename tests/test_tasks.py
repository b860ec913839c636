"""Tasks: real-data loading and splits, answer parsing on realistic generations, bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latro.tasks import GSM8K, TASKS, ARCChallenge, DataError, Example, JsonlTask, get_task
from latro.tasks.base import read_jsonl

DATA = Path("/work/shared/data")


def _dir(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="module")
def gsm8k_splits():
    task = GSM8K(str(_dir("gsm8k")))
    return {split: task.load(split) for split in ("train", "validation", "test")}


@pytest.fixture(scope="module")
def arc_splits():
    task = ARCChallenge(str(_dir("arc_challenge")))
    return {split: task.load(split) for split in ("train", "validation", "test")}


def _write(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# ---------------------------------------------------------------- real data

def test_gsm8k_counts_and_gold(gsm8k_splits):
    assert [len(gsm8k_splits[s]) for s in ("train", "validation", "test")] == [6973, 500, 1319]
    first = gsm8k_splits["test"][0]
    assert first.answer == "18" and first.question.startswith("Janet")
    assert first.rationale.endswith("$18 every day at the farmer’s market.")
    assert "<<" not in first.rationale and "####" not in first.rationale


def test_gsm8k_validation_is_fixed_and_disjoint(gsm8k_splits):
    train, validation = gsm8k_splits["train"], gsm8k_splits["validation"]
    assert not {ex.id for ex in train} & {ex.id for ex in validation}
    assert len({ex.id for ex in train} | {ex.id for ex in validation}) == 7473
    again = GSM8K(str(_dir("gsm8k"))).load("validation")
    assert [ex.id for ex in again] == [ex.id for ex in validation]
    smaller = GSM8K(str(_dir("gsm8k")), validation_size=100)
    assert len(smaller.load("validation")) == 100 and len(smaller.load("train")) == 7373


def test_gsm8k_commas_dropped_from_gold(gsm8k_splits):
    golds = [ex.answer for split in gsm8k_splits.values() for ex in split]
    assert all("," not in g and float(g) == float(g) for g in golds)
    assert any(g.startswith("-") for g in golds)


def test_arc_counts_and_irregular_labels(arc_splits):
    assert [len(arc_splits[s]) for s in ("train", "validation", "test")] == [1119, 299, 1172]
    examples = [ex for split in arc_splits.values() for ex in split]
    assert all(ex.answer in {label for label, _ in ex.choices} for ex in examples)
    digits = [ex for ex in examples if ex.choices[0][0] == "1"]
    assert len(digits) == 49
    sizes = {len(ex.choices) for ex in examples}
    assert sizes == {3, 4, 5}
    task = ARCChallenge()
    for ex in digits[:5] + [ex for ex in examples if len(ex.choices) != 4]:
        assert task.parse_answer(f"Reasoning... The answer is ({ex.answer}).", ex) == ex.answer
        assert f"({ex.choices[-1][0]}) {ex.choices[-1][1]}" in task.prompt(ex)


def test_arc_prompt_and_answer_text(arc_splits):
    ex = arc_splits["test"][0]
    task = ARCChallenge()
    assert task.prompt(ex) == (
        f"Question: {ex.question}\nOptions: (A) Planetary density will decrease. (B) Planetary years will "
        "become longer. (C) Planetary days will become shorter. (D) Planetary gravity will become stronger.\n"
        "Let's think step by step first then print your answer like 'The answer is (one of the options)'.")
    assert task.answer_text(ex) == "The answer is (C)."
    assert GSM8K().answer_text(Example("x", "q", "18")) == "The answer is 18."
    assert GSM8K().prompt(Example("x", "What is 2+2?", "4")) == "What is 2+2? Let's think step by step."


# ---------------------------------------------------------------- GSM8K parsing

GSM_CASES = [
    ("She makes 9 * 2 = 18 dollars. The answer is 18.", "18"),
    ("The answer is 1,000.", "1000"),
    ("So he pays $1,234,567 in total. The answer is $1,234,567.", "1234567"),
    ("The answer is $18.", "18"),
    ("The answer is 18 dollars.", "18"),
    ("The answer is 3.50.", "3.5"),
    ("The answer is 18.00", "18"),
    ("The temperature drops 5 degrees: 2 - 5 = -3. The answer is -3.", "-3"),
    ("First guess: the answer is 12. Wait, 12 + 6 = 18. The answer is 18.", "18"),
    ("the answer is: 42", "42"),
    ("**The answer is** 25", "25"),
    ("**The answer is: 7**", "7"),
    ("Therefore, the final result is \\boxed{18}.", "18"),
    ("The answer is \\(\\boxed{64}\\).", "64"),
    ("16 - 3 - 4 = 9 eggs, and 9 * 2 = 18", "18"),
    ("He has 10-3 = 7 apples left", "7"),
    ("I am not sure how to solve this.", None),
    ("The answer is 0.5 hours", "0.5"),
    ("The answer is .75", "0.75"),
    ("THE FORCED IS 100%.", "100"),
    ("The answer is 5 + 3 = 8", "5"),
    ("The answer is unknown, but 12 * 3 = 36", "12"),
    ("So 6 * 3 = 18. The answer is 18. I hope the answer is right.", "18"),
    ("The answer is 2, 3, and 4.", "2"),
]


@pytest.mark.parametrize("text, expected", GSM_CASES)
def test_gsm8k_parse(text, expected):
    assert GSM8K().parse_answer(text, Example("x", "q", "0")) == expected


@pytest.mark.parametrize("pred, gold, ok", [
    ("18", "18", True), ("18.0", "18", True), ("18.00", "18", True), ("1,000", "1000", True),
    ("17", "18", False), (None, "18", False), ("abc", "18", False), ("-3", "3", False), ("3.5", "3.50", True),
])
def test_gsm8k_is_correct(pred, gold, ok):
    assert GSM8K().is_correct(pred, Example("x", "q", gold)) is ok


# ---------------------------------------------------------------- ARC parsing

PLANT = Example("p", "Which do plants need?", "B", (("A", "A plant needs rocks"), ("B", "Sunlight"),
                                                     ("C", "Darkness"), ("D", "Salt water")))
DIGITS = Example("d", "Which is a mammal?", "3", (("1", "Shark"), ("2", "Frog"), ("3", "Whale"), ("4", "Eagle")))
GENES = Example("g", "Offspring genotype?", "C", (("A", "R"), ("B", "rr"), ("C", "Rr"), ("D", "RR")))
FIVE = Example("f", "Pick one", "E", tuple(zip("ABCDE", ["iron", "gold", "tin", "lead", "zinc"])))

ARC_CASES = [
    (PLANT, "Plants make food from light. The answer is (B).", "B"),
    (PLANT, "The answer is B.", "B"),
    (PLANT, "The answer is B) Sunlight", "B"),
    (PLANT, "The answer is **B**", "B"),
    (PLANT, "**The answer is: (B) Sunlight**", "B"),
    (PLANT, "The answer is option B.", "B"),
    (PLANT, "The answer is Option (B).", "B"),
    (PLANT, "The answer is sunlight.", "B"),
    (PLANT, "the answer is (b).", "B"),
    (PLANT, "the answer is b", "B"),
    (PLANT, "A plant needs light, not (A). The answer is (B).", "B"),
    (PLANT, "The answer is (A). Hmm, no: plants need light. The answer is (B).", "B"),
    (PLANT, "The answer is A plant needs rocks.", "A"),
    (PLANT, "The answer is a plant that grows.", None),
    (PLANT, "Option (C) is wrong; (B) fits best.", "B"),
    (PLANT, "A plant needs light so I pick the second one.", None),
    (PLANT, "The answer is that plants need sunlight to grow.", "B"),
    (PLANT, "The answer is $\\boxed{B}$", "B"),
    (PLANT, "The answer is (E).", None),
    (DIGITS, "Whales breathe air. The answer is (3).", "3"),
    (DIGITS, "The answer is 3.", "3"),
    (DIGITS, "The answer is Whale.", "3"),
    (DIGITS, "Not (1) or (2); (3) is a mammal.", "3"),
    (GENES, "The answer is Rr.", "C"),
    (GENES, "The answer is that the offspring is rr.", "B"),
    (FIVE, "The answer is (E) zinc.", "E"),
    (FIVE, "The answer is ZINC", "E"),
]


@pytest.mark.parametrize("ex, text, expected", ARC_CASES)
def test_arc_parse(ex, text, expected):
    assert ARCChallenge().parse_answer(text, ex) == expected


def test_arc_is_correct():
    task = ARCChallenge()
    assert task.is_correct("B", PLANT) and not task.is_correct("C", PLANT) and not task.is_correct(None, PLANT)


# ---------------------------------------------------------------- generic JSONL

def test_jsonl_numeric_text_and_choice_records(tmp_path):
    path = _write(tmp_path / "train.jsonl", [
        {"question": "2+2?", "answer": 4, "rationale": "2+2=4", "id": "q1"},
        {"question": "Capital of France?", "answer": "Paris."},
        {"question": "Which is red?", "answer": "B", "choices": ["grass", "blood", "sky"]},
        {"question": "Which is wet?", "answer": "water", "choices": [{"label": "1", "text": "sand"},
                                                                       {"label": "2", "text": "water"}]},
    ])
    task = JsonlTask(train_file=str(path), prompt_template="Q: {question}")
    num, text, letters, digits = task.load("train")
    assert (num.id, num.answer, num.rationale, text.id, text.answer) == ("q1", "4", "2+2=4", "train-2", "Paris")
    assert letters.choices == (("A", "grass"), ("B", "blood"), ("C", "sky")) and digits.answer == "2"
    assert task.prompt(num) == "Q: 2+2?" and "Options: (A) grass (B) blood (C) sky" in task.prompt(letters)
    assert task.answer_text(text) == "The answer is Paris." and task.answer_text(digits) == "The answer is (2)."
    assert task.parse_answer("2 + 2 = 4. The answer is 4.0", num) == "4"
    assert task.is_correct(task.parse_answer("Paris it is. The answer is **paris**.", text), text)
    assert not task.is_correct(task.parse_answer("The answer is Lyon.", text), text)
    assert task.parse_answer("I think Paris.", text) is None
    assert task.parse_answer("The answer is (B).", letters) == "B"
    assert task.parse_answer("The answer is water.", digits) == "2"


def test_jsonl_missing_split_file_is_clear():
    with pytest.raises(ValueError, match="no test data"):
        JsonlTask(train_file="x.jsonl").load("test")
    with pytest.raises(ValueError, match="unknown split"):
        JsonlTask(train_file="x.jsonl").load("dev")


def test_registry():
    assert set(TASKS) >= {"gsm8k", "arc_challenge", "jsonl"}
    assert isinstance(get_task("gsm8k", data_dir="d", validation_size=3), GSM8K)
    with pytest.raises(ValueError, match="known tasks: arc_challenge, arithmetic, arithmetic_easy, dataset, gsm8k, js"):
        get_task("mmlu")


# ---------------------------------------------------------------- bad input

def test_malformed_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [{"question": "a", "answer": "1"}, "", '{"question": "b", '])
    with pytest.raises(DataError, match=r"bad\.jsonl:3: malformed JSON"):
        read_jsonl(path)


def test_non_object_line(tmp_path):
    with pytest.raises(DataError, match=r"list\.jsonl:1: expected a JSON object"):
        read_jsonl(_write(tmp_path / "list.jsonl", ["[1, 2]"]))


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=r"empty\.jsonl: no records"):
        read_jsonl(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl"):
        JsonlTask(train_file=str(tmp_path / "nope.jsonl")).load("train")


def test_missing_answer_field(tmp_path):
    path = _write(tmp_path / "train.jsonl", [{"question": "a", "answer": "1"}, {"question": "b"}])
    with pytest.raises(DataError, match=r"train\.jsonl:2: missing field 'answer'"):
        JsonlTask(train_file=str(path)).load("train")


def test_gsm8k_answer_without_marker(tmp_path):
    records = [{"question": "q", "answer": "2+2=4\n#### 4"}, {"question": "q", "answer": "4"}]
    _write(tmp_path / "test.jsonl", records)
    with pytest.raises(DataError, match=r"test\.jsonl:2: answer has no '#### <number>'"):
        GSM8K(str(tmp_path)).load("test")


def test_arc_answer_key_not_a_label(tmp_path):
    choices = [{"text": t, "label": l} for l, t in zip("ABC", ["x", "y", "z"])]
    _write(tmp_path / "ARC-Challenge-Dev.jsonl", [{"id": "1", "question": {"stem": "s", "choices": choices},
                                                   "answerKey": "D"}])
    with pytest.raises(DataError, match=r"ARC-Challenge-Dev\.jsonl:1: answer 'D' is not one of the labels"):
        ARCChallenge(str(tmp_path)).load("validation")


def test_jsonl_choice_answer_not_an_option(tmp_path):
    path = _write(tmp_path / "v.jsonl", [{"question": "q", "answer": "F", "choices": ["a", "b"]}])
    with pytest.raises(DataError, match=r"v\.jsonl:1: answer 'F'"):
        JsonlTask(validation_file=str(path)).load("validation")


@pytest.mark.parametrize("record, message", [
    ({"question": "", "answer": "1"}, "field 'question' is empty"),
    ({"question": " \n\t", "answer": "1"}, "field 'question' is empty"),
    ({"question": "Pick", "answer": "A", "choices": ["only"]}, ("a multiple-choice question needs at least 2 "
                                                                "choices, got 1")),
    ({"question": "Pick", "answer": "A", "choices": []}, "a multiple-choice question needs at least 2 choices, got 0"),
    ({"question": "Pick", "answer": "B", "choices": ["x", " "]}, "choice 'B' has no text"),
    ({"question": "2+2?", "answer": "The answer is 4"}, ("answer 'The answer is 4' contains 'The answer is': give "
                                                         "the final answer alone")),
    ({"question": "Capital?", "answer": "Paris\nFrance"}, ("answer 'Paris\\nFrance' spans several lines; give a "
                                                          "one-line answer")),
])
def test_jsonl_records_that_could_not_be_scored_name_file_and_line(tmp_path, record, message):
    path = _write(tmp_path / "train.jsonl", [{"question": "ok", "answer": "1"}, record])
    with pytest.raises(DataError) as err:
        JsonlTask(train_file=str(path)).load("train")
    assert str(err.value) == f"{path}:2: {message}"


@pytest.mark.parametrize("line, message", [
    ('{"question": "q", "answer": NaN}', "NaN is not a number"),
    ('{"question": "q", "answer": -Infinity}', "-Infinity is not a number"),
    ('{"question": "q", "answer": 1e999}', "number 1e999 is out of range"),
    ('{"question": "q", "answer": "1", "answer": "2"}', "duplicate key 'answer'"),
])
def test_json_that_python_accepts_but_a_record_must_not_use(tmp_path, line, message):
    path = _write(tmp_path / "train.jsonl", ['{"question": "ok", "answer": "1"}', line])
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    assert str(err.value) == f"{path}:2: {message}"


def test_arc_row_with_fewer_texts_than_labels(tmp_path):
    from latro.tasks.arc import arc_example

    row = {"id": "x", "question": "Which?", "answerKey": "D",
           "choices": {"label": ["A", "B", "C", "D"], "text": ["a", "b", "c"]}}
    with pytest.raises(DataError, match=r"^hub:3: 4 choice labels but 3 choice texts$"):
        arc_example(row, "hub:3")
    one = {"id": "1", "question": {"stem": "s", "choices": [{"label": "A", "text": "x"}]}, "answerKey": "A"}
    blank = {"id": "2", "question": {"stem": "  ", "choices": [{"label": "A", "text": "x"},
                                                               {"label": "B", "text": "y"}]},
             "answerKey": "A"}
    _write(tmp_path / "ARC-Challenge-Test.jsonl", [one])
    with pytest.raises(DataError, match=r"ARC-Challenge-Test\.jsonl:1: a multiple-choice question needs at least 2"):
        ARCChallenge(str(tmp_path)).load("test")
    _write(tmp_path / "ARC-Challenge-Test.jsonl", [blank])
    with pytest.raises(DataError, match=r"ARC-Challenge-Test\.jsonl:1: field 'stem' is empty"):
        ARCChallenge(str(tmp_path)).load("test")


def test_gsm8k_train_file_too_small_for_validation_says_so(tmp_path):
    _write(tmp_path / "train.jsonl", [{"question": f"{n} + 1?", "answer": f"{n} + 1\n#### {n + 1}"} for n in range(3)])
    with pytest.raises(DataError) as err:
        GSM8K(str(tmp_path)).load("train")
    assert str(err.value) == (f"{tmp_path / 'train.jsonl'}: 3 training questions, too few to hold out 500 "
                              "validation questions and train on the rest")
    assert len(GSM8K(str(tmp_path), validation_size=1).load("train")) == 2
    _write(tmp_path / "test.jsonl", [{"question": "", "answer": "x\n#### 1"}])
    with pytest.raises(DataError, match=r"test\.jsonl:1: field 'question' is empty"):
        GSM8K(str(tmp_path)).load("test")
