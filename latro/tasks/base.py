"""Shared task interface: examples, JSONL reading with precise errors, and split helpers."""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

from latro.errors import UserError
from latro.registry import Registry

SPLITS = ("train", "validation", "test")
# Fixed so the held-out validation questions are the same on every run and machine.
VALIDATION_SEED = 20241107
_MARKER = re.compile(r"the\s+answer\s+is", re.IGNORECASE)


class DataError(UserError):
    """Bad input data. The message names the file (and 1-based line) so users can fix it."""


class _Rejected(ValueError):
    """Valid JSON syntax that a record must not use (read_jsonl turns it into a DataError)."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise _Rejected(f"duplicate key {repeated[0]!r}")
    return dict(pairs)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Rejected(f"number {text} is out of range")
    return value


def _no_constant(name: str):
    raise _Rejected(f"{name} is not a number")


@dataclass(frozen=True)
class Example:
    """One question. `answer` is the normalised gold final answer that parsers must reproduce."""

    id: str
    question: str
    answer: str
    choices: tuple[tuple[str, str], ...] = ()
    rationale: str | None = None


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, record) for each non-blank line; any defect raises DataError at file:line."""
    path = Path(path)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as err:
        raise DataError(f"{path}: cannot read file ({err.strerror or err})") from err
    records = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw, object_pairs_hook=_unique_keys, parse_float=_finite, parse_constant=_no_constant)
        except _Rejected as err:
            raise DataError(f"{path}:{number}: {err}") from err
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            raise DataError(f"{path}:{number}: malformed JSON ({err})") from err
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append((number, record))
    if not records:
        raise DataError(f"{path}: no records (empty file)")
    return records


def require(record: dict, key: str, where: str, types: type | tuple[type, ...] = str):
    """Field `key` of `record`, checked for presence and type, so errors point at the bad line."""
    if key not in record or record[key] is None:
        raise DataError(f"{where}: missing field '{key}'")
    value = record[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise DataError(f"{where}: field '{key}' has unexpected type {type(value).__name__}")
    return value


def require_text(record: dict, key: str, where: str) -> str:
    """String field `key` of `record` with something in it besides whitespace."""
    value = require(record, key, where)
    if not value.strip():
        raise DataError(f"{where}: field '{key}' is empty")
    return value


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def hold_out(examples: list[Example], size: int,
             seed: int = VALIDATION_SEED) -> tuple[list[Example], list[Example]]:
    """Split (train, validation) by a seeded permutation; both keep the original order.

    Used where a dataset ships no validation split (GSM8K): the choice depends only on the
    seed and the number of examples, so it is reproducible and the parts never overlap.
    """
    if not 0 <= size < len(examples):
        raise ValueError(f"validation size {size} must be in [0, {len(examples)})")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[:size])
    train = [ex for i, ex in enumerate(examples) if i not in held]
    return train, [ex for i, ex in enumerate(examples) if i in held]


def after_last_marker(text: str) -> str | None:
    """The text after the last "The answer is" (any case), or None when the marker is absent."""
    matches = list(_MARKER.finditer(text))
    return text[matches[-1].end():] if matches else None


class Task:
    """A dataset plus the paper's prompt, teacher-forced answer text and answer parser.

    A new task is one module in latro/tasks/ with a `@register_task("name")` subclass; it builds
    itself from the run's settings (`from_config`) and states its paper defaults."""

    name: str = ""  # set by @register_task
    # KL weight beta of the LaTRO paper for this task; the paper's GSM8K value where it gives none.
    paper_beta: float = 0.05
    # latro.prompts.PromptFormat of the run (system prompt, template, few-shot); None = the paper's prompt.
    prompt_format = None

    @classmethod
    def from_config(cls, cfg) -> Task:
        """The task as the settings `cfg` (a TrainConfig, EvalConfig or DGDiffConfig) ask for."""
        return cls()

    def load(self, split: str) -> list[Example]:
        """Examples of `split` ("train", "validation" or "test")."""
        raise NotImplementedError

    def prompt(self, ex: Example) -> str:
        """The user message, before any chat template."""
        raise NotImplementedError

    def record_example(self, record: dict, where: str, id: str) -> Example:
        """Example from one record in the task's own columns (a few-shot file's line); this default
        reads {question, answer[, rationale]}."""
        question = require_text(record, "question", where)
        answer = str(require(record, "answer", where, (str, int, float))).strip()
        rationale = record.get("rationale")
        if rationale is not None and not isinstance(rationale, str):
            raise DataError(f"{where}: field 'rationale' must be a string")
        return Example(id=str(record.get("id", id)), question=question, answer=answer, rationale=rationale)

    def answer_text(self, ex: Example) -> str:
        """Text teacher-forced after a rationale; its likelihood is the LaTRO reward."""
        return f"The answer is {ex.answer}."

    def answer_span(self, answer: str, ex: Example) -> str:
        """How a final answer is written after "The answer is" (CoVo scores this text)."""
        return f"({answer})" if ex.choices else answer

    def parse_answer(self, text: str, ex: Example) -> str | None:
        """Normalised final answer in a generation (comparable to ex.answer), or None."""
        raise NotImplementedError

    def is_correct(self, pred: str | None, ex: Example) -> bool:
        return pred is not None and pred == ex.answer


TASKS: Registry[type[Task]] = Registry("task", sort=True)  # modules import each other


def register_task(name: str):
    """Class decorator: register a Task subclass as `--task name`."""
    def register(cls: type[Task]) -> type[Task]:
        cls.name = name
        return TASKS.add(name, cls)
    return register
