"""latro from Python: the commands of the CLI as functions.

    from latro import TrainConfig, register_reward, train

    @register_reward("short", estimator="group_norm", own_answer=True)
    def short(trajectories, context):              # sees the policy's own log-probs too
        return -torch.tensor([len(ids) for ids in trajectories.sampled_ids], dtype=torch.float)

    train(TrainConfig(model="latro/demo/model", reward="short", max_steps=2),
          dataset={"train": [{"question": "1 + 1?", "answer": "2"}, ...], "validation": [...]})
"""

from __future__ import annotations

from pathlib import Path

from latro.config import DGDiffConfig, EvalConfig, TrainConfig
from latro.tasks import Example, Task, task_from_config, with_prompt_settings
from latro.tasks.jsonl import JsonlTask, jsonl_example


class RecordsTask(JsonlTask):
    """The jsonl task on in-memory records ({"question", "answer"[, "choices", "rationale", "id"]})."""

    def __init__(self, splits: dict[str, list[dict]]):
        super().__init__()
        self.records = splits

    def load(self, split: str) -> list[Example]:
        rows = self.records.get(split)
        if rows is None:
            raise ValueError(f"the dataset passed to latro has no {split!r} split")
        return [jsonl_example(rec, f"dataset[{split!r}][{n}]", f"{split}-{n}") for n, rec in enumerate(rows)]


def _task(cfg, dataset: dict[str, list[dict]] | None) -> Task:
    return with_prompt_settings(RecordsTask(dataset), cfg) if dataset is not None else task_from_config(cfg)


def _questions(task: Task, cfg) -> list[Example]:
    """The split evaluated, after checking that no few-shot example is one of its questions."""
    examples = task.load(cfg.split)
    task.prompt_format.refuse_overlap(examples, cfg.split)
    return examples[: cfg.limit or None]


def train(config: TrainConfig, dataset: dict[str, list[dict]] | None = None, algorithm: str = "latro") -> Path:
    """Train as `latro train` (or `latro sft` with algorithm="sft"); returns the run directory.
    `dataset`: records per split ("train", "validation") in place of `config.task`'s data."""
    from latro.algorithms import ALGORITHMS
    from latro.loop import TrainingLoop

    return TrainingLoop(config, ALGORITHMS[algorithm], task=_task(config, dataset) if dataset else None).train()


def evaluate(config: EvalConfig, dataset: dict[str, list[dict]] | None = None) -> dict:
    """Greedy accuracy, maj@K and pass@K as `latro eval`; returns its numbers and generations."""
    from latro.engines import evaluation_engine
    from latro.evaluate import evaluate as run
    from latro.modeling import load_model, load_tokenizer

    task = _task(config, dataset)
    model = load_model(config.model, config.dtype, config.trust_remote_code)
    tokenizer = load_tokenizer(config.tokenizer or config.model, config.trust_remote_code)
    with evaluation_engine(config, tokenizer, model) as engine:
        return run(model, tokenizer, task, _questions(task, config), samples=config.samples,
                   temperature=config.sample_temperature, max_new_tokens=config.max_new_tokens,
                   batch_size=config.batch_size, chat_template=config.chat_template, seed=config.seed, engine=engine)


def dgdiff(config: DGDiffConfig, dataset: dict[str, list[dict]] | None = None) -> dict:
    """Generation vs discrimination as `latro dgdiff`; returns its statistics and records."""
    from latro.dgdiff import run_dgdiff
    from latro.engines import evaluation_engine
    from latro.modeling import load_model, load_tokenizer

    task = _task(config, dataset)
    model = load_model(config.model, config.dtype, config.trust_remote_code)
    tokenizer = load_tokenizer(config.tokenizer or config.model, config.trust_remote_code)
    with evaluation_engine(config, tokenizer, model, stop_patterns=config.stop_patterns) as engine:
        return run_dgdiff(model, tokenizer, task, _questions(task, config), config, engine)
