"""ARC-Challenge multiple choice; the gold answer is an option label taken from each record."""

from __future__ import annotations

import re
from pathlib import Path

from latro.tasks.base import (
    DataError,
    Example,
    Task,
    after_last_marker,
    check_split,
    read_jsonl,
    register_task,
    require,
    require_text,
)

Choices = tuple[tuple[str, str], ...]
_FILES = {"train": "ARC-Challenge-Train.jsonl", "validation": "ARC-Challenge-Dev.jsonl",
          "test": "ARC-Challenge-Test.jsonl"}
# Decoration a model puts between "The answer is" and its choice: ":", "**", "$\boxed{", "option".
_LEAD = re.compile(r"(?:[\s*:_`'\"$]|\\boxed\{|\\text\{|\b(?:option|choice)\b)*", re.IGNORECASE)
_BRACKETED = re.compile(r"[(\[{]\s*(\w+)\s*[)\]}]")


def mc_prompt(question: str, choices: Choices) -> str:
    """The paper's multiple-choice prompt, with the record's own labels."""
    options = " ".join(f"({label}) {text}" for label, text in choices)
    return (f"Question: {question}\nOptions: {options}\n"
            "Let's think step by step first then print your answer like 'The answer is (one of the options)'.")


def _text_patterns(choices: Choices) -> list[tuple[re.Pattern, str]]:
    """(pattern, label) for each option text as whole words, trailing period optional, longest first.

    Exact-case patterns come before case-insensitive ones: genotype options such as "Rr" and "rr"
    differ only in case.
    """
    ordered = sorted((c for c in choices if c[1].strip()), key=lambda c: -len(c[1]))
    return [(re.compile(rf"(?<!\w){re.escape(text.strip().rstrip('.'))}(?!\w)", flags), label)
            for flags in (0, re.IGNORECASE) for label, text in ordered]


def _choice_at_start(tail: str, choices: Choices) -> str | None:
    """Label that `tail` opens with: "(C)", an option's full text, "C"/"C."/"C)" or a lone "c"."""
    labels = {label.lower(): label for label, _ in choices}
    head = tail[_LEAD.match(tail).end():]
    bracketed = _BRACKETED.match(head)
    if bracketed and bracketed.group(1).lower() in labels:
        return labels[bracketed.group(1).lower()]
    for pattern, label in _text_patterns(choices):
        if pattern.match(head):
            return label
    bare = re.match(r"(\w+)(?!\w)", head)
    if bare and bare.group(1) in labels.values():  # exact case, so "a plant" is not option A
        return bare.group(1)
    lone = re.match(r"(\w+)[\s.)*]*$", head.split("\n", 1)[0])
    return labels.get(lone.group(1).lower()) if lone else None


def _choice_in(tail: str, choices: Choices) -> str | None:
    """First "(X)" label or full option text anywhere in `tail`, for answers like "The answer is that ..."."""
    labels = {label for label, _ in choices}
    hits = [(m.start(), 0, m.group(1)) for m in _BRACKETED.finditer(tail) if m.group(1) in labels]
    if not hits:  # ties at one position go to the earlier (exact-case, longer) pattern
        patterns = enumerate(_text_patterns(choices))
        found = [(pattern.search(tail), rank, label) for rank, (pattern, label) in patterns]
        hits = [(m.start(), rank, label) for m, rank, label in found if m]
    return min(hits)[2] if hits else None


def parse_choice(text: str, choices: Choices) -> str | None:
    """Option chosen after the last "The answer is"; without that marker, the last "(X)" mentioned."""
    tail = after_last_marker(text)
    if tail is not None:
        return _choice_at_start(tail, choices) or _choice_in(tail, choices)
    labels = {label for label, _ in choices}
    mentions = [m.group(1) for m in _BRACKETED.finditer(text) if m.group(1) in labels]
    return mentions[-1] if mentions else None


def check_choices(choices: Choices, gold: str, where: str) -> None:
    """Reject records a parser could never score or that ask nothing: fewer than 2 options, empty or
    repeated labels, an option without text, gold not a label."""
    labels = [label for label, _ in choices]
    if len(labels) < 2:
        raise DataError(f"{where}: a multiple-choice question needs at least 2 choices, got {len(labels)}")
    if not all(labels) or len(set(labels)) != len(labels):
        raise DataError(f"{where}: choices must have distinct non-empty labels, got {labels}")
    empty = [label for label, text in choices if not text.strip()]
    if empty:
        raise DataError(f"{where}: choice {empty[0]!r} has no text")
    if gold not in labels:
        raise DataError(f"{where}: answer {gold!r} is not one of the labels {labels}")


def arc_example(record: dict, where: str) -> Example:
    """Example from an original ARC record (question = {stem, choices}) or a hub row (flat)."""
    question = require(record, "question", where, (str, dict))
    if isinstance(question, dict):
        stem = require_text(question, "stem", where)
        pairs = [(c.get("label"), c.get("text")) if isinstance(c, dict) else (None, None)
                 for c in require(question, "choices", where, list)]
    else:
        stem, raw = require_text(record, "question", where), require(record, "choices", where, dict)
        labels, texts = raw.get("label") or [], raw.get("text") or []
        if len(labels) != len(texts):
            raise DataError(f"{where}: {len(labels)} choice labels but {len(texts)} choice texts")
        pairs = list(zip(labels, texts))
    if any(label is None or text is None for label, text in pairs):
        raise DataError(f"{where}: every choice needs a 'label' and a 'text'")
    choices = tuple((str(label).strip(), str(text)) for label, text in pairs)
    gold = str(require(record, "answerKey", where)).strip()
    check_choices(choices, gold, where)
    return Example(id=str(require(record, "id", where)), question=stem, answer=gold, choices=choices)


@register_task("arc_challenge")
class ARCChallenge(Task):
    """ARC-Challenge; Train/Dev/Test files map to train/validation/test.

    The teacher-forced answer is "The answer is (C)." with parentheses, matching the
    "(C) text" option format of the prompt and so the form the model is asked to produce.
    """

    paper_beta = 0.25

    def __init__(self, data_dir: str | None = None):
        self.data_dir = data_dir

    @classmethod
    def from_config(cls, cfg) -> ARCChallenge:
        return cls(data_dir=cfg.data_dir)

    def load(self, split: str) -> list[Example]:
        check_split(split)
        if self.data_dir is None:
            from datasets import load_dataset

            rows = load_dataset("allenai/ai2_arc", "ARC-Challenge", split=split)
            return [arc_example(dict(row), f"allenai/ai2_arc[{split}]:{n}") for n, row in enumerate(rows, 1)]
        path = Path(self.data_dir) / _FILES[split]
        return [arc_example(rec, f"{path}:{n}") for n, rec in read_jsonl(path)]

    def prompt(self, ex: Example) -> str:
        return mc_prompt(ex.question, ex.choices)

    def record_example(self, record: dict, where: str, id: str) -> Example:
        return arc_example(record, where)

    def answer_text(self, ex: Example) -> str:
        return f"The answer is ({ex.answer})."

    def parse_answer(self, text: str, ex: Example) -> str | None:
        return parse_choice(text, ex.choices)
