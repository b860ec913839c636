"""Any dataset of question/answer records (hub, JSON, JSONL, CSV, Parquet, Arrow): numeric, free-text or
multiple-choice answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from string import ascii_uppercase

from latro.errors import UserError
from latro.tasks.arc import check_choices, mc_prompt, parse_choice
from latro.tasks.base import (
    DataError,
    Example,
    Task,
    after_last_marker,
    check_split,
    hold_out,
    register_task,
    require,
    require_text,
)
from latro.tasks.gsm8k import _CALCULATOR, normalize_number, parse_number, same_number
from latro.tasks.sources import Rows, read_file, read_source


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


@dataclass(frozen=True)
class Fields:
    """Which column of a row holds each part of a question (--question-field, ...)."""

    question: str = "question"
    answer: str = "answer"
    choices: str = "choices"
    rationale: str = "rationale"


def _choice_list(raw, where: str, field: str) -> list:
    """Options as a list: a CSV cell holds them as a JSON list, a hub row as {label: [...], text: [...]}."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise DataError(f"{where}: field '{field}' must be a list (in a CSV cell: a JSON list)") from None
    if isinstance(raw, dict) and isinstance(raw.get("label"), list) and isinstance(raw.get("text"), list):
        if len(raw["label"]) != len(raw["text"]):
            raise DataError(f"{where}: {len(raw['label'])} choice labels but {len(raw['text'])} choice texts")
        raw = [{"label": label, "text": text} for label, text in zip(raw["label"], raw["text"])]
    if not isinstance(raw, list):
        raise DataError(f"{where}: field '{field}' has unexpected type {type(raw).__name__}")
    return raw


def _split_worked_answer(answer, rationale: str | None) -> tuple:
    """GSM8K-style "worked solution #### 42": the gold is what follows the last '####', and the text
    before it (without calculator annotations) is the rationale unless the row gives one."""
    if not isinstance(answer, str) or "####" not in answer:
        return answer, rationale
    worked, final = answer.rsplit("####", 1)
    return final.strip(), rationale if rationale is not None else (_CALCULATOR.sub("", worked).strip() or None)


def jsonl_example(record: dict, where: str, default_id: str, fields: Fields = Fields()) -> Example:
    """Example from one row, checked: DataError at `where` for anything a run could not use."""
    question = require_text(record, fields.question, where)
    answer = require(record, fields.answer, where, (str, int, float))
    has_choices = record.get(fields.choices) is not None
    choices = _choices(_choice_list(record[fields.choices], where, fields.choices), where) if has_choices else None
    rationale = record.get(fields.rationale)
    if rationale is not None and not isinstance(rationale, str):
        raise DataError(f"{where}: field '{fields.rationale}' must be a string")
    answer, rationale = _split_worked_answer(answer, rationale)
    given_id = record.get("id")
    return Example(id=str(default_id if given_id is None else given_id), question=question,
                   answer=_gold(answer, choices, where), choices=choices or (), rationale=rationale)


def held_out_size(train_size: int) -> int:
    """Validation questions held out of train where a dataset has no validation split: a tenth,
    at least 1 and at most 500 (GSM8K's 500 of 7,473), chosen by `hold_out`'s fixed seed."""
    return max(1, min(500, train_size // 10))


@register_task("dataset")
class DatasetTask(Task):
    """Any question/answer dataset: a hub id, or local JSON, JSONL, CSV, Parquet or Arrow files.

    Rows are loaded by `datasets.load_dataset`, mapped by the field names, then each is checked,
    an error naming its file and line (or row). How an example is scored follows from its gold
    answer: options -> multiple choice as in ARC (prompt included); a number -> numeric as in
    GSM8K; otherwise the text after the last "The answer is", compared case-insensitively.
    A --dataset without a validation split has `held_out_size` questions of train held out for it.
    """

    def __init__(self, dataset: str | None = None, dataset_config: str | None = None,
                 train_file: str | None = None, validation_file: str | None = None, test_file: str | None = None,
                 splits: dict[str, str | None] | None = None, fields: Fields = Fields(),
                 prompt_template: str = "{question} Let's think step by step."):
        self.dataset, self.dataset_config = dataset, dataset_config
        self.files = {"train": train_file, "validation": validation_file, "test": test_file}
        # Split of the dataset read for each of ours; validation None = "validation" if it has one.
        self.splits = {"train": "train", "validation": None, "test": "test", **(splits or {})}
        self.fields, self.prompt_template = fields, prompt_template
        self._source: dict[str, Rows] | None = None

    @classmethod
    def from_config(cls, cfg) -> DatasetTask:
        fields = Fields(cfg.question_field, cfg.answer_field, cfg.choices_field, cfg.rationale_field)
        splits = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}
        return cls(dataset=cfg.dataset, dataset_config=cfg.dataset_config, train_file=cfg.train_file,
                   validation_file=cfg.validation_file, test_file=cfg.test_file, splits=splits, fields=fields)

    def load(self, split: str) -> list[Example]:
        check_split(split)
        # One file per split names each split itself; only a dataset without one has validation held out.
        if split == "test" or self.files["validation"] or self.dataset is None or self._rows("validation"):
            return self._examples(split)
        train = self._examples("train")
        if len(train) < 2:
            raise DataError(f"{self._name('train')}: {len(train)} training question, too few to hold out "
                            "validation questions and train on the rest; give a validation split")
        train, validation = hold_out(train, held_out_size(len(train)))
        return train if split == "train" else validation

    def _examples(self, split: str) -> list[Example]:
        rows = self._rows(split)
        if rows is None:
            raise UserError(f"task {self.name!r} has no {split} data: {self._missing(split)}")
        # Default ids number the rows as their places do (line or row), so an id points at its row.
        return [jsonl_example(record, where, f"{split}-{where.rsplit(':', 1)[-1].removeprefix(' row ')}",
                              self.fields) for record, where in zip(rows.records, rows.places)]

    def _rows(self, split: str) -> Rows | None:
        """The rows of `split` from its own file or from the dataset; None where there are none."""
        if self.files[split] is not None:
            return read_file(self.files[split])
        if self.dataset is None:
            return None
        if self._source is None:
            self._source = read_source(self.dataset, self.dataset_config)
        name = self.splits[split]
        if name is None:  # validation: the dataset's own if it has one, else held out of train
            return self._source.get("validation")
        if name not in self._source:
            if split == "test" and self.splits["test"] == "test":
                return None
            raise DataError(f"{self.dataset}: no split {name!r}; its splits: {', '.join(self._source)}")
        return self._source[name]

    def _name(self, split: str) -> str:
        return self.files[split] or f"{self.dataset}[{self.splits[split]}]"

    def _missing(self, split: str) -> str:
        if self.dataset is None:
            return f"pass --{split}-file or --dataset"
        return f"{self.dataset} has no split 'test' (its splits: {', '.join(self._source)}); pass --test-split"

    def record_example(self, record: dict, where: str, id: str) -> Example:
        return jsonl_example(record, where, id, self.fields)

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


@register_task("jsonl")
class JsonlTask(DatasetTask):
    """The dataset task on one file per split (--train-file, --validation-file, --test-file)."""
