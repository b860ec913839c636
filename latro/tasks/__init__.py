"""Tasks: datasets with their prompts, teacher-forced answer texts and answer parsers."""

from __future__ import annotations

from latro.errors import UserError
from latro.tasks.arc import ARCChallenge
from latro.tasks.arithmetic import Arithmetic, ArithmeticEasy
from latro.tasks.base import DataError, Example, Task
from latro.tasks.gsm8k import GSM8K
from latro.tasks.jsonl import JsonlTask

TASKS: dict[str, type[Task]] = {"gsm8k": GSM8K, "arc_challenge": ARCChallenge, "jsonl": JsonlTask,
                                "arithmetic": Arithmetic, "arithmetic_easy": ArithmeticEasy}


def get_task(name: str, **kwargs) -> Task:
    """Instantiate the task registered as `name` with its constructor's keyword arguments."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


__all__ = ["ARCChallenge", "Arithmetic", "ArithmeticEasy", "DataError", "Example", "GSM8K", "JsonlTask", "TASKS", "Task", "get_task"]
