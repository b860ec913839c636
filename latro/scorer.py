"""Scorer: one teacher-forced pass over prompt + rationale + answer -> per-token log-probs.

The rationale log-prob (for REINFORCE and the KL term) and the answer log-prob (the LaTRO
reward and its likelihood term) come from the same forward pass. Only the hidden states of the
positions that predict a scored token go through the output head, in chunks whose logits are
recomputed in backward (activation checkpointing), so no [batch, length, vocab] tensor exists.
The same chunks give each token's self-certainty (Intuitor, arXiv 2505.19590) on request, at the
cost of one extra reduction over the vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import StaticCache

from latro.kv_cache import cache_keyword, left_pad, select_rows
from latro.trajectories import FORCED, SAMPLED


@dataclass
class Batch:
    """Right-padded sequences and, for every scored token, its row and segment."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    segments: torch.Tensor  # [B, T]: SAMPLED / FORCED for scored tokens, 0 otherwise

    def to(self, device) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.segments.to(device))

    def rows(self, part: slice) -> Batch:
        """The sequences of `part`, their padding cut to the longest of them (right padding: the
        scored tokens, their order and their log-probs are those of the whole batch)."""
        width = int(self.attention_mask[part].sum(1).max())
        return Batch(self.input_ids[part, :width], self.attention_mask[part, :width], self.segments[part, :width])

    def token_span(self, part: slice) -> slice:
        """Where the scored tokens of the sequences of `part` lie in the scorer's row-major output."""
        counts = (self.segments[:, 1:] != 0).sum(1)
        start = int(counts[: part.start].sum())
        return slice(start, start + int(counts[part].sum()))


def micro_batches(rows: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` of `rows` sequences (size 0: one slice of all)."""
    size = size or rows
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


def make_batch(prompts: list[list[int]], rationales: list[list[int]], answers: list[list[int]],
               pad_id: int) -> Batch:
    rows = [p + z + y for p, z, y in zip(prompts, rationales, answers)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    segments = torch.zeros_like(ids)
    for i, (p, z, y) in enumerate(zip(prompts, rationales, answers)):
        n = len(p) + len(z) + len(y)
        ids[i, :n] = torch.tensor(rows[i], dtype=torch.long)
        mask[i, :n] = 1
        segments[i, len(p) : len(p) + len(z)] = SAMPLED
        segments[i, len(p) + len(z) : n] = FORCED
    if (segments[:, 0] != 0).any():
        raise ValueError("every sequence needs at least one prompt token before the scored tokens")
    return Batch(ids, mask, segments)


def _unwrap(model) -> nn.Module:
    """The transformers model inside a peft wrapper (LoRA layers stay in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _token_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                    softcap: float | None, certainty: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    logits = head(hidden)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16/fp16 -> fp32
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    normaliser = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets[:, None]).squeeze(-1) - normaliser
    if not certainty:
        return logp, None
    # KL(uniform || p) = logsumexp(logits) - mean(logits) - log |V|; a reward, so no gradient.
    return logp, (normaliser - logits.mean(-1) - math.log(logits.shape[-1])).detach()


class TokenScorer(nn.Module):
    """Wraps a causal LM; forward returns the log-prob of every scored token, in row-major order,
    and with `with_certainty` also each token's self-certainty (detached), as a pair.

    It is an nn.Module so that `accelerator.prepare` can wrap it (DDP needs its forward called).
    """

    def __init__(self, model: nn.Module, chunk_size: int = 512):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        # What FSDP's transformer-based auto-wrap shards one by one (the decoder layer classes).
        self._no_split_modules = getattr(_unwrap(model), "_no_split_modules", None)

    def forward(self, input_ids, attention_mask, segments, with_certainty: bool = False):
        base = _unwrap(self.model)
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                    position_ids=positions, use_cache=False).last_hidden_state
        rows, cols = (segments[:, 1:] != 0).nonzero(as_tuple=True)  # position t predicts t + 1
        hidden = hidden[rows, cols]
        targets = input_ids[rows, cols + 1]
        head = base.get_output_embeddings()
        softcap = getattr(base.config, "final_logit_softcapping", None)
        logps, certainties = [hidden.new_zeros(0)], [hidden.new_zeros(0)]
        for start in range(0, len(targets), self.chunk_size):
            h, t = hidden[start : start + self.chunk_size], targets[start : start + self.chunk_size]
            args = (head, h, t, softcap, with_certainty)
            logp, certainty = checkpoint(_token_logprobs, *args, use_reentrant=False) \
                if torch.is_grad_enabled() else _token_logprobs(*args)
            logps.append(logp)
            certainties.append(certainty)
        logp = torch.cat(logps)
        return (logp, torch.cat(certainties)) if with_certainty else logp


@dataclass
class SequenceLogprobs:
    rationale: torch.Tensor  # [B] sum of rationale token log-probs
    answer: torch.Tensor  # [B] sum of answer token log-probs
    token_logprobs: torch.Tensor  # [M] every scored token, row-major
    certainty: torch.Tensor | None = None  # [B] mean self-certainty of the sampled (rationale) tokens

    def sampled_token_logprobs(self, segments: torch.Tensor) -> list[torch.Tensor]:
        """Per sequence, the log-prob of each sampled (rationale) token, in order."""
        kind = segments[:, 1:][segments[:, 1:] != 0]
        counts = (segments == SAMPLED).sum(1).tolist()
        return list(self.token_logprobs[kind == SAMPLED].detach().split(counts))


def score_in_parts(scorer, batch: Batch, parts: list[slice], with_certainty: bool = False):
    """The scorer's output for the whole batch, computed on the sequences of each part in turn
    (a pass over all of them at once when there is one part)."""
    outputs = []
    for part in parts:
        piece = batch if len(parts) == 1 else batch.rows(part)
        outputs.append(scorer(piece.input_ids, piece.attention_mask, piece.segments, with_certainty=with_certainty))
    if len(outputs) == 1:
        return outputs[0]
    if with_certainty:
        return tuple(torch.cat(column) for column in zip(*outputs))
    return torch.cat(outputs)


def sequence_logprobs(token_logprobs, segments: torch.Tensor) -> SequenceLogprobs:
    """Sum per-token log-probs into per-sequence rationale and answer totals (`token_logprobs`
    may be the scorer's (log-probs, certainties) pair, which also gives the mean certainty)."""
    certainty = None
    if isinstance(token_logprobs, tuple):
        token_logprobs, certainty = token_logprobs
    scored = segments[:, 1:]
    rows, cols = (scored != 0).nonzero(as_tuple=True)
    kind = scored[rows, cols]
    totals = []
    for code in (SAMPLED, FORCED):
        weights = (kind == code).to(token_logprobs.dtype)
        sums = token_logprobs.new_zeros(segments.shape[0])
        totals.append(sums.index_add(0, rows, token_logprobs * weights))
    if certainty is not None:
        sampled = (kind == SAMPLED).to(certainty.dtype)
        count = sampled.new_zeros(segments.shape[0]).index_add(0, rows, sampled)
        certainty = certainty.new_zeros(segments.shape[0]).index_add(0, rows, certainty * sampled) / count.clamp(min=1)
    return SequenceLogprobs(totals[0], totals[1], token_logprobs, certainty)


@torch.no_grad()
def next_token_logprobs(model, sequences: list[list[int]], token_ids: list[int], batch_size: int = 16,
                        pad_id: int = 0) -> list[list[float]]:
    """log p(t | sequence) for every t in `token_ids`, per sequence: one pass, no KV cache kept.

    The forced-choice judge's case (n one-token choices after one long prompt): branch_logprobs
    would hold n copies of every prompt's KV cache; here only the last position's logits are made.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    wanted = torch.tensor(token_ids, device=device)
    results: list[list[float]] = []
    for start in range(0, len(sequences), batch_size):
        ids, mask = left_pad(sequences[start : start + batch_size], pad_id)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False,
                       position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device), logits_to_keep=1).logits
        results += torch.log_softmax(logits[:, -1].float(), dim=-1)[:, wanted].tolist()
    model.train(was_training)
    return results


@torch.no_grad()
def branch_logprobs(model, sequences: list[list[int]], branches: list[tuple[int, int, list[int], list[int]]],
                    batch_size: int = 64, pad_id: int = 0) -> list[float]:
    """Sum log-prob of `answer` after sequences[s][:cut] + stem, for each branch (s, cut, stem, answer).

    Many branches share one sequence (CoVo: every intermediate state of a response, times every
    candidate answer). Each sequence is run once; a branch then attends only to the first `cut`
    tokens of its sequence's cached keys and values (a padding mask with a hole) and adds its own
    few tokens at positions cut, cut + 1, ..., so the cost is one pass per sequence plus a few
    tokens per branch, not one full pass per branch. Equal to scoring each branch's text alone.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # gradient checkpointing turns the KV cache off in train mode
    results: list[float] = []
    for start in range(0, len(branches), batch_size):
        chunk = branches[start : start + batch_size]
        rows = sorted({s for s, *_ in chunk})
        ids, mask = left_pad([sequences[s] for s in rows], pad_id)
        width = ids.shape[1]
        # Re-feed each branch's last visible token so that its first stem token is predicted
        # from a new position; the hole then starts right after that token.
        tails = [[sequences[s][cut - 1]] + stem + answer for s, cut, stem, answer in chunk]
        extra = max(map(len, tails))
        cache = StaticCache(config=model.config, max_cache_len=width + extra)
        kw = {cache_keyword(model): cache}
        model(input_ids=ids.to(device), attention_mask=mask.to(device),
              position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device), use_cache=True, logits_to_keep=1, **kw)
        row_of = {s: i for i, s in enumerate(rows)}
        select_rows(cache, torch.tensor([row_of[s] for s, *_ in chunk], device=device))
        full = torch.zeros((len(chunk), width + extra), dtype=torch.long)
        new_ids = torch.full((len(chunk), extra), pad_id, dtype=torch.long)
        positions = torch.zeros((len(chunk), extra), dtype=torch.long)
        for b, ((s, cut, _, _), tail) in enumerate(zip(chunk, tails)):
            offset = width - len(sequences[s])  # left padding of its sequence
            full[b, offset : offset + cut - 1] = 1
            full[b, width : width + len(tail)] = 1
            new_ids[b, : len(tail)] = torch.tensor(tail)
            positions[b] = torch.arange(cut - 1, cut - 1 + extra)
        logits = model(input_ids=new_ids.to(device), attention_mask=full.to(device),
                       position_ids=positions.to(device), use_cache=True, **kw).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        for b, (_, _, stem, answer) in enumerate(chunk):
            first = len(stem)  # logits at tail index i predict tail token i + 1
            picked = logp[b, first : first + len(answer)].gather(-1, torch.tensor(answer, device=device)[:, None])
            results.append(picked.sum().item())
    model.train(was_training)
    return results
