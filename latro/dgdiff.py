"""SELF-[IN]CORRECT (arXiv 2404.04298): is a model better at choosing among its own answers than
at generating one?

    latro dgdiff --model runs/latro/model --task arithmetic --limit 200
    latro dgdiff --model latro/demo/model --task arithmetic --discriminators prompt,latro

Per question: n candidates at temperature 0.7. S_gen is the mean accuracy over the n candidates
(the expected score of a random pick: the paper scores one random pick, whose luck alone moves
S_gen by more than the effects reported); S_disc scores the candidate a discriminator picks;
DG-DIFF = S_disc - S_gen, with a 95% bootstrap interval over questions, and the one-sided McNemar
test of H0: DG-DIFF <= 0 on the discriminator's outcome paired with one randomly picked candidate
per question (McNemar needs paired right/wrong outcomes). Discriminators: `prompt` (the paper's:
the same model reads the question and all candidates and answers "### <k>", greedy; a choice it
does not give scores as the worst candidate), `prompt_forced` (the same prompt with the reply
forced to "### " and the likeliest index chosen), and latro's self-rewards used as scores
(highest wins, ties to the earlier candidate). Candidates use the task's zero-shot prompt, the one
training and `latro eval` use (the paper's are few-shot).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from latro.errors import UserError
from latro.modeling import context_length
from latro.prompts import (
    answer_ids,
    encode_prompt,
    encode_user_message,
    end_of_turn_id,
    stop_token_ids,
)
from latro.registry import Registry
from latro.rewards import RewardContext, get_reward
from latro.rollout import Rollout, Sampler
from latro.scorer import TokenScorer, branch_logprobs, make_batch, next_token_logprobs, sequence_logprobs
from latro.tasks import Example, Task
from latro.trajectories import Trajectories

_CHOICE = re.compile(r"###\s*(\d+)")


def mcnemar_one_sided(n10: int, n01: int) -> tuple[float, float]:
    """(z, p) of H0 "discrimination is no better": z = (n10 - n01) / sqrt(n10 + n01), p = 1 - Phi(z).
    With no discordant pair there is no evidence either way: z = 0, p = 1."""
    if n10 + n01 == 0:
        return 0.0, 1.0
    z = (n10 - n01) / math.sqrt(n10 + n01)
    return z, 0.5 * math.erfc(z / math.sqrt(2))


def bootstrap_interval(values: list[float], seed: int, resamples: int = 10_000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of per-question values (questions resampled
    with replacement)."""
    data = torch.tensor(values, dtype=torch.float64)
    picks = torch.randint(len(values), (resamples, len(values)), generator=torch.Generator().manual_seed(seed))
    lo, hi = torch.quantile(data[picks].mean(1), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return lo, hi


def dg_statistics(correct: list[bool], choices: list[int | None], gen_pick: list[int], n: int, seed: int) -> dict:
    """S_gen (mean accuracy of all n candidates), S_disc, DG-DIFF with its 95% bootstrap interval
    over questions, and McNemar on the discriminator's outcome against the paired random pick
    `gen_pick`; an unparseable choice (None) scores as the worst candidate."""
    disc, gen, pick = [], [], []
    for q, choice in enumerate(choices):
        outcomes = correct[q * n : (q + 1) * n]
        disc.append(outcomes[choice] if choice is not None else min(outcomes))
        gen.append(sum(outcomes) / n)
        pick.append(outcomes[gen_pick[q]])
    n10 = sum(a and not b for a, b in zip(disc, pick))
    n01 = sum(b and not a for a, b in zip(disc, pick))
    z, p = mcnemar_one_sided(n10, n01)
    total = max(len(choices), 1)
    diffs = [d - g for d, g in zip(disc, gen)]
    return {"s_gen": sum(gen) / total, "s_disc": sum(disc) / total, "dg_diff": sum(diffs) / total,
            "dg_diff_ci95": list(bootstrap_interval(diffs, seed)) if diffs else None,
            "s_gen_pick": sum(pick) / total, "n10": n10, "n01": n01, "z": z, "p": p,
            "unparseable": sum(c is None for c in choices) / total}


def judge_prompt(question: str, candidates: list[str]) -> str:
    """The paper's multiple-choice discrimination prompt (GSM8K form), candidates in sampling order."""
    n = len(candidates)
    labels = ",".join(str(i) for i in range(1, n)) + f" or {n}"
    shown = "\n\n".join(f"Solution {i}:\n{c.strip()}" for i, c in enumerate(candidates, 1))
    return (f"{question}\n\nHere are {n} candidate solutions to this question.\n\n{shown}\n\n"
            f"Examine each solution step by step and decide which one is correct. End your response with "
            f"\"Therefore, the final choice is:\n### <{labels}>\"")


def parse_choice(text: str, n: int) -> int | None:
    """0-based index of the last "### k" with 1 <= k <= n, else None."""
    found = _CHOICE.findall(text)
    return int(found[-1]) - 1 if found and 1 <= int(found[-1]) <= n else None


def _score(scorer, tokenizer, rollouts, sampled, forced, batch_size, with_certainty=False):
    """Teacher-forced scores of prompt + sampled + forced for each rollout, in chunks."""
    out = []
    for start in range(0, len(rollouts), batch_size):
        rows = range(start, min(start + batch_size, len(rollouts)))
        batch = make_batch([rollouts[i].prompt_ids for i in rows], [sampled[i] for i in rows],
                           [forced[i] for i in rows], tokenizer.pad_token_id or 0)
        batch = batch.to(next(scorer.parameters()).device)
        scored = sequence_logprobs(scorer(batch.input_ids, batch.attention_mask, batch.segments,
                                          with_certainty=with_certainty), batch.segments)
        out += (scored.certainty if with_certainty else scored.answer).tolist()
    return out


def _answer_likelihoods(scorer, tokenizer, rollouts, forced, batch_size) -> list[float]:
    """Sum log-prob of each forced answer after its candidate's rationale (-inf where None)."""
    rows = [i for i, f in enumerate(forced) if f is not None]
    values = _score(scorer, tokenizer, [rollouts[i] for i in rows], [rollouts[i].rationale_ids for i in rows],
                    [forced[i] for i in rows], batch_size)
    out = [-math.inf] * len(rollouts)
    for i, value in zip(rows, values):
        out[i] = value
    return out


def _pick(scores: list[float]) -> int:
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


@dataclass
class Candidates:
    """What every discriminator sees: n sampled candidates per question, consecutive."""

    model: Any
    tokenizer: Any
    task: Task
    cfg: Any  # the DGDiffConfig
    examples: list[Example]  # the questions
    rollouts: list[Rollout]  # n per question
    answers: list[str | None]  # each candidate's own parsed answer
    scorer: TokenScorer
    end_id: int  # closes a teacher-forced answer
    stops: set[int]  # end tokens of generation
    context: int  # the model's context length
    judge_engine: Any = None  # generates the prompt discriminator's reply (greedy, to the stop tokens)
    judge_prompts: tuple[dict[int, list[int]], int] | None = None  # the prompt discriminators' prompts, once

    @property
    def n(self) -> int:
        return self.cfg.candidates

    @property
    def per_candidate(self) -> list[Example]:
        return [ex for ex in self.examples for _ in range(self.n)]


@dataclass
class Judgement:
    choices: list[int | None]  # per question, the chosen candidate (None: no parseable choice)
    scores: list[float] | None = None  # per candidate, when choosing the highest score
    texts: list[str | None] | None = None  # per question, the judge's reply
    prompt_too_long: float | None = None  # share of questions whose judge prompt did not fit


Discriminator = Callable[[Candidates], Judgement]
DISCRIMINATORS: Registry[Discriminator] = Registry("discriminator")


def register_discriminator(name: str):
    """Register `discriminator(candidates) -> Judgement` as `--discriminators name`."""
    return DISCRIMINATORS.decorator(name)


def by_score(scores: list[float], c: Candidates) -> Judgement:
    """Each question's highest-scoring candidate (ties: the earlier)."""
    n = c.n
    return Judgement([_pick(scores[q * n : (q + 1) * n]) for q in range(len(c.examples))], scores=scores)


@register_discriminator("prompt")
def judge_prompt_greedy(c: Candidates) -> Judgement:
    """The paper's: the same model answers the multiple-choice prompt greedily, "### k" parsed."""
    prompts, too_long = _judge_prompts_of(c)
    choices, texts = _judge(c.judge_engine, prompts, c.n, c.cfg, c.context, len(c.examples))
    return Judgement(choices, texts=texts, prompt_too_long=too_long / max(len(c.examples), 1))


@register_discriminator("prompt_forced")
def judge_prompt_forced(c: Candidates) -> Judgement:
    prompts, too_long = _judge_prompts_of(c)
    choices = _forced_choice(c.model, c.tokenizer, prompts, c.n, c.cfg, len(c.examples))
    return Judgement(choices, prompt_too_long=too_long / max(len(c.examples), 1))


@register_discriminator("latro")
def own_answer_likelihood(c: Candidates) -> Judgement:
    """log p(own answer | rationale): the LaTRO likelihood with the candidate's answer, no labels."""
    own = [None if a is None else answer_ids(c.tokenizer, c.task, replace(ex, answer=a), r, c.end_id)
           for a, ex, r in zip(c.answers, c.per_candidate, c.rollouts)]
    return by_score(_answer_likelihoods(c.scorer, c.tokenizer, c.rollouts, own, c.cfg.batch_size), c)


def _training_reward(name: str, c: Candidates) -> Judgement:
    """A training reward itself, used as a score."""
    reward = get_reward(name)
    trajectories = Trajectories(rollouts=c.rollouts, sampled_ids=[r.rationale_ids for r in c.rollouts],
                                forced_ids=[[] for _ in c.rollouts],
                                stopped=torch.tensor([r.stopped for r in c.rollouts]), own_answers=c.answers)
    context = RewardContext(task=c.task, examples=c.per_candidate, group_size=c.n, model=c.model,
                            tokenizer=c.tokenizer, options=reward.options_from(c.cfg))
    return by_score(reward.score(trajectories, context).tolist(), c)


register_discriminator("covo")(lambda c: _training_reward("covo", c))


@register_discriminator("self_certainty")
def self_certainty(c: Candidates) -> Judgement:
    scores = _score(c.scorer, c.tokenizer, c.rollouts, [r.completion_ids or [c.tokenizer.eos_token_id]
                                                        for r in c.rollouts],
                    [[] for _ in c.rollouts], c.cfg.batch_size, with_certainty=True)
    return by_score(scores, c)


register_discriminator("majority")(lambda c: _training_reward("majority", c))


@register_discriminator("latro_gold")
def gold_answer_likelihood(c: Candidates) -> Judgement:
    """log p(gold answer | rationale): uses the labels, a check of the LaTRO training reward."""
    gold = [answer_ids(c.tokenizer, c.task, ex, r, c.end_id) for ex, r in zip(c.per_candidate, c.rollouts)]
    return by_score(_answer_likelihoods(c.scorer, c.tokenizer, c.rollouts, gold, c.cfg.batch_size), c)


def _judge_prompts_of(c: Candidates) -> tuple[dict[int, list[int]], int]:
    if c.judge_prompts is None:
        c.judge_prompts = _judge_prompts(c.tokenizer, c.examples, c.rollouts, c.n, c.cfg, c.context)
    return c.judge_prompts


@torch.no_grad()
def run_dgdiff(model, tokenizer, task, examples, cfg, engine=None) -> dict:
    """`engine`: what samples the candidates, stopping at cfg.stop_patterns (the vLLM one for
    `latro dgdiff --rollout-engine vllm`); its `for_evaluation()` view answers the judge prompt.
    Default latro's own decoder on `model`. Scoring is always teacher-forced on `model`."""
    names = [d.strip() for d in cfg.discriminators.split(",") if d.strip()]  # checked by DGDiffConfig
    n, device = cfg.candidates, next(model.parameters()).device
    model.eval()
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    stops, context = stop_token_ids(tokenizer, model), context_length(model)
    engine = engine or Sampler(lambda: model, tokenizer, stop_patterns=cfg.stop_patterns, stop_token_ids=stops)
    end_id = end_of_turn_id(tokenizer, cfg.chat_template)
    # Each question's rationale budget is what its own prompt and answer allowance leave of the
    # context; a question with no room is skipped and counted, not scored.
    prompts = [encode_prompt(tokenizer, task, ex, cfg.chat_template) for ex in examples]
    budgets = [min(cfg.max_new_tokens, context - len(p) - cfg.answer_tokens) for p in prompts]
    kept = [q for q, budget in enumerate(budgets) if budget >= 1]
    skipped = len(examples) - len(kept)
    if examples and not kept:
        raise UserError(f"none of the {skipped} questions fits the model's {context}-token context")
    examples, prompts, budgets = [examples[q] for q in kept], [prompts[q] for q in kept], [budgets[q] for q in kept]
    rollouts = []
    for start in range(0, len(examples), cfg.batch_size):
        chunk = slice(start, start + cfg.batch_size)
        rollouts += engine.generate(prompts[chunk], num_samples=n, max_new_tokens=budgets[chunk],
                                    temperature=cfg.temperature, generator=generator, answer_tokens=cfg.answer_tokens)
    per_candidate = [ex for ex in examples for _ in range(n)]
    answers = [task.parse_answer(r.completion, ex) for r, ex in zip(rollouts, per_candidate)]
    correct = [task.is_correct(a, ex) for a, ex in zip(answers, per_candidate)]

    candidates = Candidates(model=model, tokenizer=tokenizer, task=task, cfg=cfg, examples=examples,
                            rollouts=rollouts, answers=answers, scorer=TokenScorer(model), end_id=end_id,
                            stops=stops, context=context, judge_engine=engine.for_evaluation())
    judgements = {d: DISCRIMINATORS[d](candidates) for d in names}
    scores = {d: j.scores for d, j in judgements.items() if j.scores is not None}
    choices = {d: j.choices for d, j in judgements.items()}
    judge_texts = judgements["prompt"].texts if "prompt" in judgements else [None] * len(examples)

    rng = random.Random(cfg.seed)
    gen_pick = [rng.randrange(n) for _ in examples]  # paired with each discriminator in McNemar's test
    results = {d: dg_statistics(correct, choices[d], gen_pick, n, cfg.seed) for d in names}
    for d, judgement in judgements.items():
        if judgement.prompt_too_long is not None:
            results[d]["prompt_too_long"] = judgement.prompt_too_long

    records = []
    for q, ex in enumerate(examples):
        rows = range(q * n, (q + 1) * n)
        records.append({
            "id": ex.id, "question": ex.question, "gold": ex.answer, "gen_pick": gen_pick[q],
            "candidates": [{"completion": rollouts[i].completion, "answer": answers[i], "correct": correct[i],
                            "scores": {d: s[i] for d, s in scores.items()}} for i in rows],
            "choices": {d: c[q] for d, c in choices.items()},
            **({"judge": judge_texts[q]} if "prompt" in choices else {}),
        })
    s_gen = sum(correct) / max(len(correct), 1)
    s_gen_pick = sum(correct[q * n + k] for q, k in enumerate(gen_pick)) / max(len(examples), 1)
    pass_n = sum(any(correct[q * n : (q + 1) * n]) for q in range(len(examples))) / max(len(examples), 1)
    return {"n": len(examples), "skipped": skipped, "candidates": n, "temperature": cfg.temperature,
            "s_gen": s_gen, "s_gen_pick": s_gen_pick, f"pass@{n}": pass_n, "discriminators": results,
            "records": records}


def _judge_prompts(tokenizer, examples, rollouts, n, cfg, context) -> tuple[dict[int, list[int]], int]:
    """Token ids of the multiple-choice prompt per question; those with no room left are counted."""
    prompts, too_long = {}, 0
    for q, ex in enumerate(examples):
        shown = [r.completion for r in rollouts[q * n : (q + 1) * n]]
        ids = encode_user_message(tokenizer, judge_prompt(task_question(ex), shown), cfg.chat_template)
        if len(ids) + 16 > context:  # no room to answer: scored as an unparseable choice
            too_long += 1
        else:
            prompts[q] = ids
    return prompts, too_long


def _judge(engine, prompts, n, cfg, context, count):
    """The paper's discriminator: greedy answer to the multiple-choice prompt, parsed for "### k"."""
    choices, texts = [None] * count, [None] * count
    order = sorted(prompts, key=lambda q: len(prompts[q]))  # similar lengths batch with less padding
    for start in range(0, len(order), cfg.batch_size):
        chunk = order[start : start + cfg.batch_size]
        ids = [prompts[q] for q in chunk]
        budgets = [min(cfg.judge_max_new_tokens, context - len(x)) for x in ids]  # _judge_prompts left room
        outs = engine.generate(ids, num_samples=1, max_new_tokens=budgets, temperature=0.0)
        for q, out in zip(chunk, outs):
            texts[q] = out.completion
            choices[q] = parse_choice(out.completion, n)
    return choices, texts


def _forced_choice(model, tokenizer, prompts, n, cfg, count):
    """The same prompt, the reply forced to "Therefore, the final choice is:\n###": the choice is
    the likeliest of " 1" .. " n" (for models that cannot produce the format themselves)."""
    lead = tokenizer("Therefore, the final choice is:\n###", add_special_tokens=False).input_ids
    digits = [tokenizer(f" {k}", add_special_tokens=False).input_ids for k in range(1, n + 1)]
    questions = sorted(prompts, key=lambda q: len(prompts[q]))  # similar lengths batch with less padding
    sequences = [prompts[q] + lead for q in questions]
    pad_id = tokenizer.pad_token_id or 0
    if all(len(d) == 1 for d in digits):  # one pass per prompt, memory of one prompt's activations
        rows = next_token_logprobs(model, sequences, [d[0] for d in digits], cfg.batch_size, pad_id)
    else:  # multi-token choices: n branches per prompt, one prompt's n KV copies at a time
        branches = [(row, len(seq), [], d) for row, seq in enumerate(sequences) for d in digits]
        flat = branch_logprobs(model, sequences, branches, n, pad_id)
        rows = [flat[row * n : (row + 1) * n] for row in range(len(sequences))]
    choices = [None] * count
    for q, logp in zip(questions, rows):
        choices[q] = _pick(logp)
    return choices


def task_question(ex) -> str:
    """The question as shown to the judge, with its options for multiple-choice tasks."""
    if not ex.choices:
        return ex.question
    return ex.question + "\nOptions: " + " ".join(f"({label}) {text}" for label, text in ex.choices)


def format_table(result: dict, title: str) -> str:
    n = result["candidates"]
    lines = [title, (f"S_gen (mean accuracy of the {n} candidates): {100 * result['s_gen']:.1f}%   "
                     f"one random candidate (paired in McNemar): {100 * result['s_gen_pick']:.1f}%   "
                     f"pass@{n}: {100 * result[f'pass@{n}']:.1f}%"),
             (f"  {'discriminator':<15}{'S_disc':>8}{'DG-DIFF':>9}{'95% CI':>17}{'n10':>6}{'n01':>6}{'z':>7}"
              f"{'p':>8}{'unparsed':>10}")]
    for d, r in result["discriminators"].items():
        ci = r["dg_diff_ci95"]
        shown = f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "-"
        lines.append(f"  {d:<15}{100 * r['s_disc']:7.1f}%{100 * r['dg_diff']:+8.1f}%{shown:>17}{r['n10']:6d}"
                     f"{r['n01']:6d}{r['z']:7.2f}{r['p']:8.3f}{100 * r['unparseable']:9.1f}%")
    return "\n".join(lines)

