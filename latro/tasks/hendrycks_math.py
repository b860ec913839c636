"""MATH (Hendrycks et al., 2021, arXiv 2103.03874): competition problems whose solutions end in \\boxed{}.

    latro eval --model latro/demo/model --task math --data-dir latro/tasks/data/math --split test

Gold is the last \\boxed{...} of the solution (or a record's own "answer", as MATH-500 gives it);
a prediction is equivalent to it when `math-verify` (the Hugging Face checker the field uses for
MATH) says so: "\\frac{1}{2}", "0.5" and "1/2" are one answer.

LaTRO answer forcing: the paper has no MATH run, so the forced answer is chosen here as
"The answer is $\\boxed{gold}$." -- the paper's marker, which ends a rationale at the stop pattern
"The answer is", followed by the box MATH solutions end with. The box makes the answer's end
unambiguous (answers such as "0.5" or "x = 3." contain periods), and the prompt asks for exactly
this form, as the paper's ARC prompt asks for "The answer is (one of the options)".

Data: the hub (train: all seven subjects of EleutherAI/hendrycks_math; test: MATH-500 by default,
or the full 5,000 problems with --math-test full), or a local --data-dir with train.jsonl and
test.jsonl in the MATH format (problem, solution, level, type). Validation is a fixed tenth of
train (at most 500 problems), held out by a seeded permutation, as for GSM8K.
"""

from __future__ import annotations

import re
from pathlib import Path

from latro.errors import UserError
from latro.tasks.base import (
    DataError,
    Example,
    Task,
    after_last_marker,
    check_split,
    hold_out,
    read_jsonl,
    register_task,
    require_text,
)

SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
            "prealgebra", "precalculus")
FULL = "EleutherAI/hendrycks_math"
MATH500 = "HuggingFaceH4/MATH-500"
_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_SPACES = re.compile(r"\s+")
_MATH_SPAN = re.compile(r"\$+([^$]*)\$+")
_SENTENCE_END = re.compile(r"\.(?:\s|$)")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in `text`, braces balanced; None if none.

    Hand-written: math-verify parses a boxed answer into sympy but does not return its LaTeX,
    which the gold answer, the forced answer text and the majority vote need."""
    for match in reversed(list(_BOX.finditer(text))):
        rest = text[match.end():]
        if not rest.startswith("{"):  # "\boxed 5": one token
            token = re.match(r"[^\s$.,]+", rest)
            if token:
                return token.group()
            continue
        depth = 0
        for i, char in enumerate(rest):
            depth += {"{": 1, "}": -1}.get(char, 0)
            if depth == 0:
                return rest[1:i].strip() or None
    return None


def _first_span(line: str) -> str | None:
    """The answer a line opens with: its first $...$ span, else the text up to the sentence's end (a
    period then a space or the line's end, so "0.5" stays whole)."""
    math = _MATH_SPAN.match(line)
    if math:
        return math.group(1).strip() or None
    return _SENTENCE_END.split(line, 1)[0].strip(" *_`") or None


def _math_verify():
    try:
        import math_verify
    except ImportError:
        raise UserError("the math task checks answers with math-verify, which is not installed: "
                        "pip install 'latro[math]' (or pip install math-verify)") from None
    return math_verify


def math_example(record: dict, where: str, id: str) -> Example:
    """Example from a MATH record (problem, solution[, answer]); gold = the solution's last box."""
    problem = require_text(record, "problem", where)
    solution = require_text(record, "solution", where)
    answer = record.get("answer")
    gold = answer.strip() if isinstance(answer, str) and answer.strip() else last_boxed(solution)
    if not gold:
        raise DataError(f"{where}: solution has no \\boxed{{...}} final answer")
    return Example(id=str(record.get("unique_id") or id), question=problem, answer=gold, rationale=solution.strip())


@register_task("math")
class MATH(Task):
    """Hendrycks MATH with \\boxed{} answers, checked by math-verify (MATH-500 as the default test set)."""

    paper_beta = 0.05  # no MATH run in the paper: its GSM8K value

    def __init__(self, data_dir: str | None = None, test_set: str = "math500"):
        _math_verify()  # fail at start, not at the first evaluation
        self.data_dir, self.test_set = data_dir, test_set

    @classmethod
    def from_config(cls, cfg) -> MATH:
        return cls(data_dir=cfg.data_dir, test_set=getattr(cfg, "math_test", "math500"))

    def load(self, split: str) -> list[Example]:
        check_split(split)
        if split == "test":
            return self._read("test")
        examples = self._read("train")
        if len(examples) < 2:
            raise DataError(f"{self._source('train')}: {len(examples)} training problem, too few to hold out "
                            "validation problems and train on the rest")
        train, validation = hold_out(examples, max(1, min(500, len(examples) // 10)))
        return train if split == "train" else validation

    def record_example(self, record: dict, where: str, id: str) -> Example:
        return math_example(record, where, id)

    def _source(self, split: str) -> str:
        if self.data_dir:
            return str(Path(self.data_dir) / f"{split}.jsonl")
        return f"{MATH500}[test]" if split == "test" and self.test_set == "math500" else f"{FULL}[{split}]"

    def _read(self, split: str) -> list[Example]:
        if self.data_dir is None:
            return self._read_hub(split)
        path = self._source(split)
        return [math_example(rec, f"{path}:{n}", f"math-{split}-{n}") for n, rec in read_jsonl(path)]

    def _read_hub(self, split: str) -> list[Example]:
        from datasets import load_dataset

        if split == "test" and self.test_set == "math500":
            parts = [(MATH500, load_dataset(MATH500, split="test"))]
        else:  # one configuration per subject, in the order of SUBJECTS
            parts = [(f"{FULL}/{s}", load_dataset(FULL, s, split=split)) for s in SUBJECTS]
        return [math_example(dict(row), f"{name}[{split}]:{n}", f"math-{split}-{name.rsplit('/', 1)[-1]}-{n}")
                for name, rows in parts for n, row in enumerate(rows, 1)]

    def prompt(self, ex: Example) -> str:
        return (f"{ex.question}\nLet's think step by step first then print your final answer like "
                "'The answer is $\\boxed{answer}$'.")

    def answer_text(self, ex: Example) -> str:
        return f"The answer is {self.answer_span(ex.answer, ex)}."

    def answer_span(self, answer: str, ex: Example) -> str:
        return f"$\\boxed{{{answer}}}$"

    def parse_answer(self, text: str, ex: Example) -> str | None:
        """The box after the last "The answer is", else the first math span or sentence after it, else
        the text's last box; spaces collapsed so that a majority vote groups equal spellings."""
        tail = after_last_marker(text)
        found = None
        if tail is not None:
            line = tail.strip(" :*_\n").split("\n", 1)[0]
            found = last_boxed(line) or _first_span(line)
        found = found or last_boxed(text)
        return _SPACES.sub(" ", found).strip() if found else None

    def is_correct(self, pred: str | None, ex: Example) -> bool:
        if pred is None:
            return False
        if pred == ex.answer:
            return True
        verify = _math_verify()
        return bool(verify.verify(verify.parse(f"${ex.answer}$"), verify.parse(f"${pred}$")))
