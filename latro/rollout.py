"""Rollout engine: sample K continuations per prompt and cut each at its first stop pattern.

Sampling dominates the cost of LaTRO, so this loop does less work than `model.generate`:
- each distinct prompt is prefilled once and its KV cache repeated K times;
- a sequence leaves the batch (its KV rows are dropped) as soon as it reaches a stop pattern
  or an end token, so the step cost shrinks as sequences finish instead of running every row
  to the longest one;
- the KV cache is preallocated and written in place (transformers' StaticCache, uncompiled):
  a growing cache re-copies every layer's keys and values at each step, which on a CPU costs as
  much as the matrix products;
- no [batch, length, vocab] scores are kept: only the last position's logits are computed.
Sampling is plain temperature sampling (the paper's setting); temperature 0 is greedy.

With `answer_tokens` > 0 a row that reaches a stop pattern keeps sampling for at most that many
tokens (or until an end token), so the model's own final answer can be read (own-answer rewards,
and the per-step monitoring of any reward); the rationale is still cut at the pattern.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import StaticCache

from latro.kv_cache import cache_keyword, left_pad, select_rows


@dataclass
class Rollout:
    prompt_index: int  # which prompt (question) this continuation belongs to
    prompt_ids: list[int]
    rationale_ids: list[int]  # sampled tokens before the stop pattern (pattern excluded)
    rationale: str  # decoded rationale_ids
    gap: str  # text between the rationale's last whole token and the stop pattern
    completion: str  # everything sampled, stop pattern and what followed included
    completion_ids: list[int]  # every sampled token, end token included
    stop: str | None  # the stop pattern or end token that ended it; None = ran out of budget
    num_sampled: int  # tokens actually sampled (compute accounting)

    @property
    def stopped(self) -> bool:
        return self.stop is not None


class StopMatcher:
    """Finds the first stop pattern in generated text; tolerant of patterns split across tokens."""

    def __init__(self, tokenizer, patterns: list[str], stop_token_ids: set[int]):
        self.tokenizer = tokenizer
        self.patterns = [p for p in patterns if p]
        self.stop_token_ids = set(stop_token_ids)
        # A pattern of n characters spans at most n tokens, plus one token it may start inside.
        self.window = max((len(p) for p in self.patterns), default=0) + 1

    def hit(self, tokens: list[int]) -> bool:
        """Does the newest token end a stop pattern or is it an end token?"""
        if tokens[-1] in self.stop_token_ids:
            return True
        if not self.patterns:
            return False
        tail = self.tokenizer.decode(tokens[-self.window :], skip_special_tokens=False)
        return any(p in tail for p in self.patterns)

    def cut(self, tokens: list[int]) -> tuple[int, str, str | None]:
        """(number of whole tokens before the first stop, gap text, stop) for a finished sequence."""
        for i, t in enumerate(tokens):
            if t in self.stop_token_ids:
                tokens, end_token = tokens[:i], self.tokenizer.convert_ids_to_tokens(t)
                break
        else:
            end_token = None
        text = self.tokenizer.decode(tokens, skip_special_tokens=False)
        found = [(text.find(p), p) for p in self.patterns if p in text]
        if not found:
            return len(tokens), "", end_token
        pos, pattern = min(found)
        n = len(tokens)
        while n > 0:  # drop tokens until the decoded prefix ends at or before the pattern start
            prefix = self.tokenizer.decode(tokens[:n], skip_special_tokens=False)
            if len(prefix) <= pos and text.startswith(prefix):
                return n, text[len(prefix) : pos], pattern
            n -= 1
        return 0, text[:pos], pattern


def prompt_budgets(max_new_tokens: int | list[int], num_prompts: int) -> list[int]:
    """One rationale budget per prompt, from one for all or a list of them."""
    budgets = [max_new_tokens] * num_prompts if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != num_prompts or min(budgets, default=1) < 1:
        raise ValueError(f"need one budget >= 1 per prompt, got {budgets} for {num_prompts} prompts")
    return budgets


def _next_tokens(logits: torch.Tensor, temperature: float, generator) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def sample(
    model,
    tokenizer,
    prompts: list[list[int]],
    *,
    num_samples: int,
    max_new_tokens: int | list[int],
    temperature: float,
    stop_patterns: list[str],
    stop_token_ids: set[int],
    generator: torch.Generator | None = None,
    answer_tokens: int = 0,
    synced: bool = False,
) -> list[Rollout]:
    """Sample `num_samples` continuations of each tokenised prompt, ordered prompt by prompt.

    A row ends at an end token, at a stop pattern (or `answer_tokens` after it), or after
    `max_new_tokens` tokens without a stop pattern: one budget for all prompts, or one per prompt
    (so that each prompt gets what its own length leaves of the context).

    `synced`: every process of torch.distributed calls the model the same number of times, as
    transformers' `generate(synced_gpus=True)`; needed when the model is sharded (DeepSpeed
    ZeRO-3, FSDP), where each forward gathers weights from all processes. A process whose rows
    are all done keeps one of them as a ghost row, fed its own samples and discarded, until the
    processes agree (one all-reduce per token) that all are done. The tokens are those of an
    unsynced call."""
    budgets = prompt_budgets(max_new_tokens, len(prompts))
    device = next(model.parameters()).device
    matcher = StopMatcher(tokenizer, stop_patterns, stop_token_ids)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    width = ids.shape[1]
    # Full-width padding mask; positions not yet written are hidden by the causal mask.
    horizon = max(budgets) + answer_tokens
    if synced:  # every process runs up to the longest horizon of any (its cache has room for the ghost row)
        horizon = _max_over_processes(horizon, device)
    mask = torch.cat([mask, mask.new_ones((len(prompts), horizon))], dim=1)
    cache = StaticCache(config=model.config, max_cache_len=width + horizon)
    cache_kw = {cache_keyword(model): cache}
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                use_cache=True, logits_to_keep=1, **cache_kw)
    select_rows(cache, torch.arange(len(prompts), device=device).repeat_interleave(num_samples))
    logits = out.logits[:, -1].repeat_interleave(num_samples, 0)
    mask = mask.repeat_interleave(num_samples, 0)
    next_pos = positions[:, -1].repeat_interleave(num_samples, 0) + 1

    total = len(prompts) * num_samples
    generated: list[list[int]] = [[] for _ in range(total)]
    answer_end: dict[int, int] = {}  # rollout -> length at which its answer allowance runs out
    active = torch.arange(total, device=device)  # rows of the running batch -> rollout index; -1: ghost
    for _ in range(horizon):
        tokens = _next_tokens(logits, temperature, generator)
        keep = []
        for row, (r, t) in enumerate(zip(active.tolist(), tokens.tolist())):
            if r < 0:
                continue
            generated[r].append(t)
            n = len(generated[r])
            if r in answer_end:  # past its stop pattern: only an end token or the allowance ends it
                done = t in matcher.stop_token_ids or n >= answer_end[r]
            elif matcher.hit(generated[r]):
                done = answer_tokens == 0 or t in matcher.stop_token_ids
                answer_end[r] = n + answer_tokens
            else:
                done = n >= budgets[r // num_samples]  # rationale budget spent without a stop pattern
            if not done:
                keep.append(row)
        if synced and _all_done(not keep, device):
            break
        if not synced and not keep:
            break
        if not keep:  # done here, not everywhere: one ghost row keeps this process's forwards going
            keep, active = [0], torch.full_like(active, -1)
        if len(keep) < len(active):
            keep_t = torch.tensor(keep, device=device)
            select_rows(cache, keep_t)
            active, tokens = active[keep_t], tokens[keep_t]
            mask, next_pos = mask[keep_t], next_pos[keep_t]
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    use_cache=True, **cache_kw)
        logits, next_pos = out.logits[:, -1], next_pos + 1
    return [finish_rollout(matcher, r // num_samples, prompts[r // num_samples], generated[r])
            for r in range(total)]


def _max_over_processes(value: int, device) -> int:
    import torch.distributed as dist

    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def _all_done(done_here: bool, device) -> bool:
    """Whether every process is done (one all-reduce; the same answer on all of them)."""
    return _max_over_processes(0 if done_here else 1, device) == 0


def finish_rollout(matcher: StopMatcher, prompt_index: int, prompt_ids, tokens) -> Rollout:
    """The record of one sampled continuation `tokens`, cut at its first stop."""
    n, gap, stop = matcher.cut(tokens)
    decode = matcher.tokenizer.decode
    return Rollout(
        prompt_index=prompt_index,
        prompt_ids=list(prompt_ids),
        rationale_ids=tokens[:n],
        rationale=decode(tokens[:n], skip_special_tokens=False),
        gap=gap,
        completion=decode(tokens, skip_special_tokens=True),
        completion_ids=list(tokens),
        stop=stop,
        num_sampled=len(tokens),
    )


class RolloutEngine(Protocol):
    """What a training step needs from a generator of rollouts; `Sampler` below is latro's own,
    another engine (vLLM, a server) is one more class with this method, registered in
    latro/engines/. One that keeps its own copy of the weights also has `sync_weights()`."""

    def generate(self, prompts: list[list[int]], *, num_samples: int, max_new_tokens: int | list[int],
                 temperature: float, generator: torch.Generator | None = None,
                 answer_tokens: int = 0) -> list[Rollout]:
        """`num_samples` rollouts per prompt, prompt by prompt, each cut at its first stop."""
        ...

    def for_evaluation(self) -> RolloutEngine:
        """The same engine generating to the stop tokens only (evaluation reads the whole answer)."""
        ...


class Sampler:
    """The RolloutEngine of `sample` above, on the current weights of the policy in training."""

    def __init__(self, model: Callable[[], torch.nn.Module], tokenizer, *, stop_patterns: list[str],
                 stop_token_ids: set[int], autocast: Callable[[], AbstractContextManager] | None = None,
                 synced: bool = False):
        """`autocast`: the context sampling runs in (the loop's `generation_context`: autocast, and
        under FSDP2 the root's weights gathered); `synced`: lockstep across processes (sharded model)."""
        self.model, self.tokenizer = model, tokenizer  # model: called each time, so it sees the live policy
        self.stop_patterns, self.stop_token_ids = stop_patterns, stop_token_ids
        self.autocast, self.synced = autocast, synced

    def for_evaluation(self) -> Sampler:
        """This sampler generating to the stop tokens only (evaluation reads the whole answer)."""
        view = copy.copy(self)
        view.stop_patterns = []
        return view

    def generate(self, prompts, *, num_samples, max_new_tokens, temperature, generator=None,
                 answer_tokens=0) -> list[Rollout]:
        # The forward of an accelerate-prepared model is autocast; this call is not, hence autocast here.
        with self.autocast() if self.autocast else contextlib.nullcontext():
            return sample(self.model(), self.tokenizer, prompts, num_samples=num_samples,
                          max_new_tokens=max_new_tokens, temperature=temperature,
                          stop_patterns=self.stop_patterns, stop_token_ids=self.stop_token_ids,
                          generator=generator, answer_tokens=answer_tokens, synced=self.synced)
