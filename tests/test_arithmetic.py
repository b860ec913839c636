"""The synthetic arithmetic task: deterministic, disjoint splits, gold rationales that are right."""

import re

import pytest

from latro.tasks import get_task
from latro.tasks.arithmetic import EASY, HARD, generate

EQUATION = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)$")


def check_rationale(ex) -> None:
    """Each line is a true equation, chained from the question's starting amount to the answer."""
    start = int(re.search(r"has (\d+) ", ex.question).group(1))
    current = start
    for line in ex.rationale.split("\n"):
        a, op, b, c = EQUATION.match(line).groups()
        a, b, c = int(a), int(b), int(c)
        assert a == current
        assert c == {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op] and (op != "/" or a % b == 0)
        assert 0 <= c <= 99
        current = c
    assert str(current) == ex.answer


@pytest.mark.parametrize("name", ["arithmetic", "arithmetic_easy"])
def test_generator_is_deterministic_with_disjoint_splits_and_true_rationales(name):
    task, again = get_task(name), get_task(name)
    splits = {s: task.load(s) for s in ("train", "validation", "test")}
    assert all(splits[s] == again.load(s) for s in splits)
    assert {s: len(v) for s, v in splits.items()} == task.sizes
    texts = [{ex.question for ex in v} for v in splits.values()]
    assert sum(map(len, texts)) == len(set().union(*texts))  # no question text in two splits
    for examples in splits.values():
        for ex in examples:
            check_rationale(ex)
    steps = {len(ex.rationale.split("\n")) for ex in splits["train"]}
    level = task.level
    assert steps == set(range(level.min_ops, level.max_ops + 1))


def test_splits_are_disjoint_as_arithmetic_and_stable_when_a_split_is_added():
    small = generate(HARD, {"train": 300, "validation": 50, "test": 50})
    large = generate(HARD, {"train": 300, "validation": 50, "test": 50, "pretrain": 500})
    assert all(small[s] == large[s] for s in small)

    def key(ex):  # the arithmetic, whatever names and wording
        return ex.rationale

    keys = {s: {key(ex) for ex in v} for s, v in large.items()}
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not keys[a] & keys[b], (a, b)
    assert generate(EASY, {"train": 20, "validation": 5, "test": 5}, seed=1) != \
        generate(EASY, {"train": 20, "validation": 5, "test": 5}, seed=2)


def test_answer_parsing_and_prompt():
    task = get_task("arithmetic")
    ex = task.load("test")[0]
    assert task.prompt(ex).endswith("Let's think step by step.")
    assert task.answer_text(ex) == f"The answer is {ex.answer}."
    assert task.is_correct(task.parse_answer(f"\n{ex.rationale}\nThe answer is {ex.answer}.", ex), ex)
    assert task.is_correct(task.parse_answer(f" The answer is {ex.answer}.0", ex), ex)
    assert not task.is_correct(task.parse_answer("The answer is 1000.", ex), ex)
    assert task.parse_answer("no number here", ex) is None
