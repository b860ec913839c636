"""Evaluation: greedy accuracy, and maj@K / pass@K from K samples (self-consistency, the paper's
maj@8 at temperature 1). Zero-shot, with the same prompts and answer parsing as training. Each
question generates up to what its own prompt leaves of the context; a question whose prompt fills
the context is skipped and counted, never scored as wrong.

    latro eval --model runs/latro/model --task gsm8k --data-dir ../shared/data/gsm8k --limit 100
"""

from __future__ import annotations

from collections import Counter

import torch

from latro.errors import UserError
from latro.modeling import context_length
from latro.prompts import encode_prompt, stop_token_ids
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
              batch_size, chat_template, generator) -> list[list[str] | None]:
    """Completions of each question; None for a question whose prompt leaves no room in the
    model's context. Each question's budget is what its own prompt leaves, up to max_new_tokens."""
    stops = stop_token_ids(tokenizer, model)
    context = context_length(model)
    completions: list[list[str] | None] = [None] * len(examples)
    for start in range(0, len(examples), batch_size):
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


def evaluate(model, tokenizer, task: Task, examples: list[Example], *, samples: int = 0,
             temperature: float = 1.0, max_new_tokens: int = 512, batch_size: int = 16,
             chat_template: bool = True, seed: int = 0) -> dict:
    """Greedy accuracy, plus maj@K and pass@K when samples = K > 0; every generation is kept.

    A question whose prompt does not fit the model's context is skipped: its record says so, it
    is counted in `skipped`, and the metrics are over the `n` questions evaluated."""
    was_training, context = model.training, context_length(model)
    model.eval()
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    kw = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, chat_template=chat_template,
              generator=generator)
    greedy = _generate(model, tokenizer, task, examples, num_samples=1, temperature=0.0, **kw)
    sampled = _generate(model, tokenizer, task, examples, num_samples=samples,
                        temperature=temperature, **kw) if samples > 0 else [[] for _ in examples]
    records, totals = [], Counter()
    for ex, g, s in zip(examples, greedy, sampled):
        record = {"id": ex.id, "question": ex.question, "gold": ex.answer}
        if g is None:
            records.append({**record, "skipped": f"prompt leaves no room in the {context}-token context"})
            continue
        pred = task.parse_answer(g[0], ex)
        answers = [task.parse_answer(c, ex) for c in s]
        record["greedy"] = {"completion": g[0], "answer": pred, "correct": task.is_correct(pred, ex)}
        totals["greedy"] += record["greedy"]["correct"]
        if samples > 0:
            vote = majority(answers)
            record["samples"] = [{"completion": c, "answer": a, "correct": task.is_correct(a, ex)}
                                 for c, a in zip(s, answers)]
            record["majority"] = vote
            totals[f"maj@{samples}"] += task.is_correct(vote, ex)
            totals[f"pass@{samples}"] += any(x["correct"] for x in record["samples"])
        records.append(record)
    model.train(was_training)
    skipped = greedy.count(None)
    n = len(examples) - skipped
    if skipped and not n:
        raise UserError(f"none of the {skipped} questions fits the model's {context}-token context")
    metrics = {key: totals[key] / max(n, 1) for key in ["greedy"] + ([f"maj@{samples}", f"pass@{samples}"]
                                                                    if samples > 0 else [])}
    return {"n": n, "skipped": skipped, "metrics": metrics, "records": records}
