"""GSM8K grade-school math: numeric answers, validation held out from train."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from latro.tasks.base import (
    DataError,
    Example,
    Task,
    after_last_marker,
    check_split,
    hold_out,
    read_jsonl,
    register_task,
    require,
    require_text,
)

# A minus sign only counts when it does not follow a digit, so "10-3" yields 10 and 3, not -3.
_NUMBER = re.compile(r"(?<![\d.])-?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)")
_CALCULATOR = re.compile(r"<<[^<>]*>>")


def normalize_number(text: str) -> str | None:
    """Canonical string of a number ("1,000" -> "1000", "18.00" -> "18", "3.50" -> "3.5").

    One spelling per value makes exact comparison and majority votes agree with numeric equality.
    """
    try:
        value = Decimal(text.replace(",", "").strip())
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def parse_number(text: str) -> str | None:
    """First number after the last "The answer is", else the last number in the text (paper)."""
    tail = after_last_marker(text)
    found = _NUMBER.search(tail) if tail is not None else None
    if found is None:
        numbers = _NUMBER.findall(text)
        return normalize_number(numbers[-1]) if numbers else None
    return normalize_number(found.group())


def same_number(pred: str | None, gold: str) -> bool:
    """Numeric equality, so "18", "18.0" and "18.00" all match gold "18"."""
    pred_value = normalize_number(pred) if pred is not None else None
    return pred_value is not None and pred_value == normalize_number(gold)


def gsm8k_example(record: dict, where: str, id: str) -> Example:
    """Example from an original-format record; gold is the number after '####'."""
    question = require_text(record, "question", where)
    solution = require(record, "answer", where)
    if "####" not in solution:
        raise DataError(f"{where}: answer has no '#### <number>' final line")
    worked, final = solution.rsplit("####", 1)
    gold = normalize_number(final)
    if gold is None:
        raise DataError(f"{where}: final answer {final.strip()!r} is not a number")
    rationale = _CALCULATOR.sub("", worked).strip() or None
    return Example(id=id, question=question, answer=gold, rationale=rationale)


class NumericTask(Task):
    """The paper's GSM8K prompt and numeric answer parsing, shared by numeric tasks."""

    def prompt(self, ex: Example) -> str:
        return f"{ex.question} Let's think step by step."

    def parse_answer(self, text: str, ex: Example) -> str | None:
        return parse_number(text)

    def is_correct(self, pred: str | None, ex: Example) -> bool:
        return same_number(pred, ex.answer)


@register_task("gsm8k")
class GSM8K(NumericTask):
    """GSM8K with the paper's prompt; validation = a fixed `validation_size` questions of train."""

    paper_beta = 0.05

    def __init__(self, data_dir: str | None = None, validation_size: int = 500):
        self.data_dir = data_dir
        self.validation_size = validation_size

    @classmethod
    def from_config(cls, cfg) -> GSM8K:
        return cls(data_dir=cfg.data_dir)

    def load(self, split: str) -> list[Example]:
        check_split(split)
        if split == "test":
            return self._read("test")
        examples = self._read("train")
        if len(examples) <= self.validation_size:
            raise DataError(f"{self._source('train')}: {len(examples)} training questions, too few to hold out "
                            f"{self.validation_size} validation questions and train on the rest")
        train, validation = hold_out(examples, self.validation_size)
        return train if split == "train" else validation

    def record_example(self, record: dict, where: str, id: str) -> Example:
        return gsm8k_example(record, where, id)

    def _source(self, split: str) -> str:
        return str(Path(self.data_dir) / f"{split}.jsonl") if self.data_dir else f"openai/gsm8k[{split}]"

    def _read(self, split: str) -> list[Example]:
        if self.data_dir is None:
            return self._read_hub(split)
        path = self._source(split)
        return [gsm8k_example(rec, f"{path}:{n}", f"gsm8k-{split}-{n}") for n, rec in read_jsonl(path)]

    @staticmethod
    def _read_hub(split: str) -> list[Example]:
        """Hub copy (openai/gsm8k, same fields and order as the original files)."""
        from datasets import load_dataset

        rows = load_dataset("openai/gsm8k", "main", split=split)
        return [gsm8k_example(dict(row), f"openai/gsm8k[{split}]:{n}", f"gsm8k-{split}-{n}")
                for n, row in enumerate(rows, 1)]
