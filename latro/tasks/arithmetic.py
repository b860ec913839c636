"""Synthetic multi-step arithmetic word problems, generated from a seed (no data files).

    latro eval --model latro/demo/model --task arithmetic --split test --limit 200

A problem is a starting amount and two to four operations (add, subtract, double, triple,
halve), told as a short story; its gold rationale writes one equation per operation and its
gold answer is the final amount. Every value stays in 0..99, so each single step is easy, while
the final answer of three or four steps is hard to produce without writing the steps: the task
separates a model that reasons from one that guesses.

Splits are disjoint as arithmetic, not only as text: two problems with the same starting amount
and operations never land in different splits, whatever names and wording they use.
`arithmetic_easy` is the natural-language version for pretrained chat models: one or two
operations on numbers up to 20.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from latro.tasks.base import SPLITS, Example, check_split, register_task
from latro.tasks.gsm8k import NumericTask

DATA_SEED = 1729  # fixed, so every run and machine sees the same questions in the same splits

NAMES = ["Ava", "Ben", "Chloe", "Dan", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack", "Kate", "Leo",
         "Mia", "Noah", "Olivia", "Paul", "Rosa", "Sam", "Tara", "Victor"]
ITEMS = ["apples", "marbles", "stickers", "coins", "books", "cards", "pencils", "shells", "stamps", "cookies"]
PRONOUN = {name: ("she" if name in {"Ava", "Chloe", "Emma", "Grace", "Iris", "Kate", "Mia", "Olivia", "Rosa",
                                     "Tara"} else "he") for name in NAMES}

# (kind, wording); {p} is the pronoun, {k} the operand, {items} the things counted.
WORDINGS = {
    "add": ["{p} buys {k} more.", "{p} finds {k} more.", "{p} gets {k} more from a friend.", "{p} wins {k} more."],
    "sub": ["{p} gives away {k}.", "{p} loses {k}.", "{p} sells {k}.", "{p} gives {k} to a friend."],
    "mul2": ["{p} doubles the {items}.", "{p} ends up with twice as many {items}."],
    "mul3": ["{p} triples the {items}.", "{p} ends up with three times as many {items}."],
    "half": ["{p} gives away half of the {items}.", "{p} keeps only half of the {items}."],
}
SYMBOL = {"add": "+", "sub": "-", "mul2": "*", "mul3": "*", "half": "/"}


@dataclass(frozen=True)
class Difficulty:
    min_ops: int
    max_ops: int
    max_start: int
    max_operand: int
    max_value: int


HARD = Difficulty(min_ops=2, max_ops=4, max_start=30, max_operand=20, max_value=99)
EASY = Difficulty(min_ops=1, max_ops=2, max_start=15, max_operand=8, max_value=20)


def _operation(rng: random.Random, value: int, level: Difficulty) -> tuple[str, int, int] | None:
    """(kind, operand, new value) of one random operation allowed from `value`, or None."""
    kinds = ["add", "sub", "add", "sub", "mul2", "mul3", "half"]
    kind = rng.choice(kinds)
    if kind == "add":
        k = rng.randint(1, min(level.max_operand, level.max_value - value)) if value < level.max_value else 0
        return ("add", k, value + k) if k else None
    if kind == "sub":
        return ("sub", k, value - k) if value >= 1 and (k := rng.randint(1, min(level.max_operand, value))) else None
    if kind in ("mul2", "mul3"):
        factor = 2 if kind == "mul2" else 3
        return (kind, factor, value * factor) if 0 < value * factor <= level.max_value else None
    return ("half", 2, value // 2) if value >= 2 and value % 2 == 0 else None


def make_problem(rng: random.Random, level: Difficulty, index: int) -> tuple[tuple, Example]:
    """(arithmetic key, example): the key identifies the problem up to wording."""
    value = rng.randint(2, level.max_start)
    start, ops = value, []
    for _ in range(rng.randint(level.min_ops, level.max_ops)):
        op = None
        while op is None:
            op = _operation(rng, value, level)
        ops.append(op)
        value = op[2]
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    pronoun = PRONOUN[name]
    sentences = [f"{name} has {start} {items}."]
    for i, (kind, k, _) in enumerate(ops):
        text = rng.choice(WORDINGS[kind]).format(p=pronoun, k=k, items=items)
        sentences.append(("Then " + text) if i else text[0].upper() + text[1:])
    sentences.append(f"How many {items} does {name} have now?")
    steps, current = [], start
    for kind, k, new in ops:
        steps.append(f"{current} {SYMBOL[kind]} {k} = {new}")
        current = new
    example = Example(id=f"arith-{index}", question=" ".join(sentences), answer=str(value),
                      rationale="\n".join(steps))
    return (start, tuple(op[:2] for op in ops)), example


def generate(level: Difficulty, sizes: dict[str, int], seed: int = DATA_SEED) -> dict[str, list[Example]]:
    """Disjoint splits: problems are drawn in order, duplicates of an earlier key are skipped,
    and the first ones go to test, then validation, then train, then any other split named in
    `sizes` (the demo model's pre-training problems), so adding one never changes the others."""
    rng, seen, problems = random.Random(seed), set(), []
    total = sum(sizes.values())
    attempts = 0
    while len(problems) < total:
        attempts += 1
        if attempts > 50 * total:
            raise ValueError(f"cannot draw {total} distinct problems at this difficulty")
        key, example = make_problem(rng, level, len(problems))
        if key not in seen:
            seen.add(key)
            problems.append(example)
    splits, start = {}, 0
    for split in ("test", "validation", "train", *sorted(set(sizes) - set(SPLITS))):
        splits[split] = problems[start : start + sizes[split]]
        start += sizes[split]
    return splits


@register_task("arithmetic")
class Arithmetic(NumericTask):
    """Two to four operations on amounts up to 99; gold rationales included (for SFT)."""

    level = HARD
    sizes = {"train": 20000, "validation": 300, "test": 500}

    def __init__(self, seed: int = DATA_SEED):
        self.seed = seed
        self._splits: dict[str, list[Example]] | None = None

    def load(self, split: str) -> list[Example]:
        check_split(split)
        if self._splits is None:
            self._splits = generate(self.level, self.sizes, self.seed)
        return list(self._splits[split])


@register_task("arithmetic_easy")
class ArithmeticEasy(Arithmetic):
    """One or two operations on amounts up to 20: for pretrained chat models."""

    level = EASY
    sizes = {"train": 2000, "validation": 200, "test": 300}
