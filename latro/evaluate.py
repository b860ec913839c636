"""Evaluation: greedy accuracy, and maj@K / pass@K from K samples (self-consistency, the paper's
maj@8 at temperature 1). Zero-shot, with the same prompts and answer parsing as training. Each
question generates up to what its own prompt leaves of the context; a question whose prompt fills
the context is skipped and counted, never scored as wrong.

    latro eval --model runs/latro/model --task gsm8k --data-dir ../shared/data/gsm8k --limit 100
"""

from __future__ import annotations

from collections import Counter

import torch
from tqdm.auto import tqdm

from latro.errors import UserError
from latro.modeling import context_length
from latro.prompts import encode_prompt, first_prompt, stop_token_ids
from latro.rollout import sample
from latro.tasks import Example, Task


def majority(answers: list[str | None]) -> str | None:
    """Most frequent parsed answer; ties go to the one seen first; None if nothing parsed."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def _generate(model, tokenizer, task, examples, *, num_samples, temperature, max_new_tokens,
              batch_size, chat_template, generator, progress=False) -> list[list[str] | None]:
    """Completions of each question; None for a question whose prompt leaves no room in the
    model's context. Each question's budget is what its own prompt leaves, up to max_new_tokens."""
    stops = stop_token_ids(tokenizer, model)
    context = context_length(model)
    completions: list[list[str] | None] = [None] * len(examples)
    batches = range(0, len(examples), batch_size)
    for start in tqdm(batches, desc=f"{task.name} T={temperature}", unit="batch", disable=not progress):
        prompts = {q: encode_prompt(tokenizer, task, examples[q], chat_template)
                   for q in range(start, min(start + batch_size, len(examples)))}
        fits = [q for q, ids in prompts.items() if len(ids) < context]
        if not fits:
            continue
        rollouts = sample(model, tokenizer, [prompts[q] for q in fits], num_samples=num_samples,
                          max_new_tokens=[min(max_new_tokens, context - len(prompts[q])) for q in fits],
                          temperature=temperature, stop_patterns=[], stop_token_ids=stops, generator=generator)
        for i, q in enumerate(fits):
            completions[q] = [r.completion for r in rollouts[i * num_samples : (i + 1) * num_samples]]
    return completions


def shard(count: int, process_index: int, num_processes: int) -> list[int]:
    """Indices of the questions one process evaluates: every num_processes-th, from its own index."""
    return list(range(process_index, count, num_processes))


def gather_records(indexed: list[tuple[int, dict]], accelerator=None) -> list[dict]:
    """Every process's (question index, record) pairs, gathered and put back in question order."""
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        indexed = gather_object(indexed)
    return [record for _, record in sorted(indexed, key=lambda pair: pair[0])]


def summarize(records: list[dict], seed: int = 0, resamples: int = 1000) -> dict:
    """Each metric's mean over the questions evaluated, its standard error sqrt(p(1-p)/(n-1)) (the
    sample standard deviation over sqrt(n), as lm-evaluation-harness reports for a mean) and a 95%
    percentile bootstrap interval over questions (`resamples` draws, seeded)."""
    scored = [r["scores"] for r in records if "scores" in r]
    n = len(scored)
    if not n:
        return {"n": 0, "skipped": len(records), "metrics": {}, "stderr": {}, "ci95": {}}
    outcomes = torch.tensor([[float(s[k]) for k in scored[0]] for s in scored], dtype=torch.float64)
    means = outcomes.mean(0)
    stderr = (means * (1 - means) / (n - 1)).sqrt() if n > 1 else torch.full_like(means, float("nan"))
    draws = torch.randint(n, (resamples, n), generator=torch.Generator().manual_seed(seed))
    bounds = outcomes[draws].mean(1).quantile(torch.tensor([0.025, 0.975], dtype=torch.float64), dim=0)
    names = list(scored[0])
    return {"n": n, "skipped": len(records) - n, "metrics": dict(zip(names, means.tolist())),
            "stderr": {k: (None if v != v else v) for k, v in zip(names, stderr.tolist())},
            "ci95": {k: [lo, hi] for k, lo, hi in zip(names, *bounds.tolist())}}


def _record(task: Task, ex: Example, greedy: list[str] | None, sampled: list[str], samples: int,
            context: int) -> dict:
    """One question's generations, parsed answers and 0/1 scores (none for a skipped question)."""
    record = {"id": ex.id, "question": ex.question, "gold": ex.answer}
    if greedy is None:
        return {**record, "skipped": f"prompt leaves no room in the {context}-token context"}
    pred = task.parse_answer(greedy[0], ex)
    record["greedy"] = {"completion": greedy[0], "answer": pred, "correct": task.is_correct(pred, ex)}
    record["scores"] = {"greedy": record["greedy"]["correct"]}
    if samples > 0:
        answers = [task.parse_answer(c, ex) for c in sampled]
        record["samples"] = [{"completion": c, "answer": a, "correct": task.is_correct(a, ex)}
                             for c, a in zip(sampled, answers)]
        record["majority"] = majority(answers)
        record["scores"][f"maj@{samples}"] = task.is_correct(record["majority"], ex)
        record["scores"][f"pass@{samples}"] = any(x["correct"] for x in record["samples"])
    return record


def evaluate(model, tokenizer, task: Task, examples: list[Example], *, samples: int = 0,
             temperature: float = 1.0, max_new_tokens: int = 512, batch_size: int = 16,
             chat_template: bool = True, seed: int = 0, accelerator=None, progress: bool = False) -> dict:
    """Greedy accuracy, plus maj@K and pass@K when samples = K > 0, each with its standard error and
    95% bootstrap interval; every generation is kept.

    With an `accelerator` of several processes (`accelerate launch`), each process evaluates its
    shard of the questions (sampling seeded with seed + its index) and the records are gathered on
    all of them. A question whose prompt does not fit the model's context is skipped: its record
    says so, it is counted in `skipped`, and the metrics are over the `n` questions evaluated."""
    was_training, context = model.training, context_length(model)
    model.eval()
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = shard(len(examples), rank, world)
    local = [examples[i] for i in mine]
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed + rank)
    kw = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, chat_template=chat_template,
              generator=generator, progress=progress and rank == 0)
    greedy = _generate(model, tokenizer, task, local, num_samples=1, temperature=0.0, **kw)
    sampled = _generate(model, tokenizer, task, local, num_samples=samples,
                        temperature=temperature, **kw) if samples > 0 else [[] for _ in local]
    model.train(was_training)
    indexed = [(i, _record(task, ex, g, s, samples, context)) for i, ex, g, s in zip(mine, local, greedy, sampled)]
    records = gather_records(indexed, accelerator)
    result = summarize(records, seed)
    if result["skipped"] and not result["n"]:
        raise UserError(f"none of the {result['skipped']} questions fits the model's {context}-token context")
    return {**result, "records": records}


def results_file(cfg, task: Task, examples: list[Example], result: dict, samples_path, processes: int = 1,
                 tokenizer=None) -> dict:
    """The report of `latro eval`, laid out as lm-evaluation-harness's results file: `results`,
    `configs`, `versions`, `n-samples`, with the per-question records in the JSONL `samples_path`."""
    import dataclasses
    import datetime
    import platform

    name = cfg.task
    metrics = {}
    for key, value in result["metrics"].items():
        metrics[key] = value
        metrics[f"{key}_stderr"] = result["stderr"][key]
        metrics[f"{key}_ci95"] = result["ci95"][key]
    settings = dataclasses.asdict(cfg)
    generation = {"max_new_tokens": cfg.max_new_tokens, "greedy": {"temperature": 0.0},
                  "samples": cfg.samples, "sample_temperature": cfg.sample_temperature, "seed": cfg.seed,
                  "stop": "EOS or end of turn", "chat_template": cfg.chat_template, "batch_size": cfg.batch_size}
    prompt = {"template": getattr(task, "prompt_template", None),
              "first_question": task.prompt(examples[0]) if examples else None,
              "system_prompt": cfg.system_prompt, "prompt_template": cfg.prompt_template, "few_shot": cfg.few_shot,
              "num_shots": cfg.num_shots, "few_shot_format": cfg.few_shot_format,
              # exactly what the model saw (chat template, system prompt and shots included)
              "first_prompt": first_prompt(tokenizer, task, examples, cfg.chat_template) if tokenizer else None}
    return {
        "results": {name: {**metrics, "n": result["n"], "skipped": result["skipped"]}},
        "configs": {name: {"task": name, "split": cfg.split, "limit": cfg.limit, "model": cfg.model,
                           "generation": generation, "prompt": prompt, "settings": settings}},
        "versions": {"latro": _version("latro"), "transformers": _version("transformers"), "torch": _version("torch"),
                     "python": platform.python_version()},
        "n-samples": {name: {"original": len(examples), "effective": result["n"]}},
        "samples": str(samples_path),
        "processes": processes,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": cfg.model, "task": name, "split": cfg.split,
    }


def _version(distribution: str) -> str | None:
    """Installed version of a distribution; None where latro runs from a checkout not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
