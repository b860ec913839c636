"""Tasks: datasets with their prompts, teacher-forced answer texts and answer parsers.

Every module here registers its tasks with `@register_task`; a new task is one new module."""

from __future__ import annotations

from latro.errors import UserError
from latro.registry import import_all
from latro.tasks.base import TASKS, DataError, Example, Task, register_task

import_all("latro.tasks")

from latro.tasks.arc import ARCChallenge  # noqa: E402  (after the registrations, for re-export)
from latro.tasks.arithmetic import Arithmetic, ArithmeticEasy  # noqa: E402
from latro.tasks.gsm8k import GSM8K  # noqa: E402
from latro.tasks.hendrycks_math import MATH  # noqa: E402
from latro.tasks.jsonl import DatasetTask, JsonlTask  # noqa: E402


def get_task(name: str, **kwargs) -> Task:
    """Instantiate the task registered as `name` with its constructor's keyword arguments."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name](**kwargs)


def task_from_config(cfg) -> Task:
    """The task named by `cfg.task`, built from the settings it reads (data_dir, files, ...), with
    the prompt settings (--system-prompt, --prompt-template, --few-shot) applied."""
    if cfg.task not in TASKS:
        raise UserError(f"unknown task {cfg.task!r}; known tasks: {', '.join(TASKS)}")
    return with_prompt_settings(TASKS[cfg.task].from_config(cfg), cfg)


def with_prompt_settings(task: Task, cfg) -> Task:
    """`task` with the PromptFormat the settings `cfg` ask for (`encode_prompt` applies it)."""
    from latro.prompts import prompt_format  # latro.prompts imports this package

    task.prompt_format = prompt_format(cfg, task)
    return task


__all__ = ["ARCChallenge", "Arithmetic", "ArithmeticEasy", "DataError", "DatasetTask", "Example", "GSM8K",
           "JsonlTask", "MATH", "TASKS", "Task", "get_task", "register_task", "task_from_config",
           "with_prompt_settings"]
