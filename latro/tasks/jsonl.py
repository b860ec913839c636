"""Any JSONL of question/answer records: numeric, free-text or multiple-choice answers."""

from __future__ import annotations

from string import ascii_uppercase

from latro.errors import UserError
from latro.tasks.arc import check_choices, mc_prompt, parse_choice
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
from latro.tasks.gsm8k import normalize_number, parse_number, same_number


def _choices(raw: list, where: str) -> tuple[tuple[str, str], ...]:
    """(label, text) pairs from a list of strings (labelled A, B, ...) or of {label, text}."""
    if len(raw) > len(ascii_uppercase):
        raise DataError(f"{where}: at most {len(ascii_uppercase)} choices are supported")
    pairs = []
    for letter, item in zip(ascii_uppercase, raw):
        if isinstance(item, str):
            pairs.append((letter, item))
        elif isinstance(item, dict) and "label" in item and "text" in item:
            pairs.append((str(item["label"]).strip(), str(item["text"])))
        else:
            raise DataError(f"{where}: each choice must be a string or a {{label, text}} object")
    return tuple(pairs)


def _gold(answer: str | int | float, choices: tuple[tuple[str, str], ...] | None, where: str) -> str:
    """Normalised gold: a label (an option's text is mapped to its label), a number, or one line of text."""
    text = str(answer).strip()
    if after_last_marker(text) is not None:  # the task writes "The answer is {gold}." itself
        raise DataError(f"{where}: answer {text!r} contains 'The answer is': give the final answer alone")
    if choices is not None:
        by_text = {option.strip().lower(): label for label, option in choices}
        gold = text if text in {label for label, _ in choices} else by_text.get(text.lower(), text)
        check_choices(choices, gold, where)
        return gold
    gold = normalize_number(text) or text.rstrip(".").strip()  # so "The answer is {gold}." has one period
    if not gold:
        raise DataError(f"{where}: field 'answer' is empty")
    if "\n" in gold:  # a prediction is read from one line
        raise DataError(f"{where}: answer {text!r} spans several lines; give a one-line answer")
    return gold


def _clean(text: str) -> str:
    """A predicted answer's first line without markdown or a trailing period."""
    return text.strip().split("\n", 1)[0].strip(" *_`:").rstrip(". ").strip()


def jsonl_example(record: dict, where: str, default_id: str) -> Example:
    question = require_text(record, "question", where)
    answer = require(record, "answer", where, (str, int, float))
    has_choices = record.get("choices") is not None
    choices = _choices(require(record, "choices", where, list), where) if has_choices else None
    rationale = record.get("rationale")
    if rationale is not None and not isinstance(rationale, str):
        raise DataError(f"{where}: field 'rationale' must be a string")
    return Example(id=str(record.get("id", default_id)), question=question,
                   answer=_gold(answer, choices, where), choices=choices or (), rationale=rationale)


@register_task("jsonl")
class JsonlTask(Task):
    """User data, one JSONL file per split.

    How an example is scored follows from its gold answer: options -> multiple choice as in ARC
    (prompt included); a number -> numeric as in GSM8K; otherwise the text after the last
    "The answer is", compared case-insensitively.
    """

    def __init__(self, train_file: str | None = None, validation_file: str | None = None,
                 test_file: str | None = None, prompt_template: str = "{question} Let's think step by step."):
        self.files = {"train": train_file, "validation": validation_file, "test": test_file}
        self.prompt_template = prompt_template

    @classmethod
    def from_config(cls, cfg) -> JsonlTask:
        return cls(train_file=cfg.train_file, validation_file=cfg.validation_file, test_file=cfg.test_file)

    def load(self, split: str) -> list[Example]:
        check_split(split)
        path = self.files[split]
        if path is None:
            raise UserError(f"task 'jsonl' has no {split} data: pass --{split}-file")
        return [jsonl_example(rec, f"{path}:{n}", f"{split}-{n}") for n, rec in read_jsonl(path)]

    def prompt(self, ex: Example) -> str:
        if ex.choices:
            return mc_prompt(ex.question, ex.choices)
        return self.prompt_template.format(question=ex.question)

    def answer_text(self, ex: Example) -> str:
        return f"The answer is ({ex.answer})." if ex.choices else f"The answer is {ex.answer}."

    def parse_answer(self, text: str, ex: Example) -> str | None:
        if ex.choices:
            return parse_choice(text, ex.choices)
        if normalize_number(ex.answer) is not None:
            return parse_number(text)
        tail = after_last_marker(text)
        return (_clean(tail) or None) if tail is not None else None

    def is_correct(self, pred: str | None, ex: Example) -> bool:
        if pred is None or ex.choices:
            return pred is not None and pred == ex.answer
        if normalize_number(ex.answer) is not None:
            return same_number(pred, ex.answer)
        return _clean(pred).lower() == ex.answer.lower()
