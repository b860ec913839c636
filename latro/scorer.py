"""Scorer: one teacher-forced pass over prompt + rationale + answer -> per-token log-probs.

The rationale log-prob (for REINFORCE and the KL term) and the answer log-prob (the LaTRO
reward and its likelihood term) come from the same forward pass. Only the hidden states of the
positions that predict a scored token go through the output head, in chunks whose logits are
recomputed in backward (activation checkpointing), so no [batch, length, vocab] tensor exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

RATIONALE, ANSWER = 1, 2  # segment codes of scored tokens


@dataclass
class Batch:
    """Right-padded sequences and, for every scored token, its row and segment."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    segments: torch.Tensor  # [B, T]: RATIONALE / ANSWER for scored tokens, 0 otherwise

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.segments.to(device))


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
        segments[i, len(p) : len(p) + len(z)] = RATIONALE
        segments[i, len(p) + len(z) : n] = ANSWER
    if (segments[:, 0] != 0).any():
        raise ValueError("every sequence needs at least one prompt token before the scored tokens")
    return Batch(ids, mask, segments)


def _unwrap(model) -> nn.Module:
    """The transformers model inside a peft wrapper (LoRA layers stay in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _token_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                    softcap: float | None) -> torch.Tensor:
    logits = head(hidden)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16/fp16 -> fp32
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


class TokenScorer(nn.Module):
    """Wraps a causal LM; forward returns the log-prob of every scored token, in row-major order.

    It is an nn.Module so that `accelerator.prepare` can wrap it (DDP needs its forward called).
    """

    def __init__(self, model: nn.Module, chunk_size: int = 512):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size

    def forward(self, input_ids, attention_mask, segments) -> torch.Tensor:
        base = _unwrap(self.model)
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                    position_ids=positions, use_cache=False).last_hidden_state
        rows, cols = (segments[:, 1:] != 0).nonzero(as_tuple=True)  # position t predicts t + 1
        hidden = hidden[rows, cols]
        targets = input_ids[rows, cols + 1]
        head = base.get_output_embeddings()
        softcap = getattr(base.config, "final_logit_softcapping", None)
        parts = []
        for start in range(0, len(targets), self.chunk_size):
            h, t = hidden[start : start + self.chunk_size], targets[start : start + self.chunk_size]
            if torch.is_grad_enabled():
                parts.append(checkpoint(_token_logprobs, head, h, t, softcap, use_reentrant=False))
            else:
                parts.append(_token_logprobs(head, h, t, softcap))
        return torch.cat(parts) if parts else hidden.new_zeros(0)


@dataclass
class SequenceLogprobs:
    rationale: torch.Tensor  # [B] sum of rationale token log-probs
    answer: torch.Tensor  # [B] sum of answer token log-probs
    token_logprobs: torch.Tensor  # [M] every scored token, row-major


def sequence_logprobs(token_logprobs: torch.Tensor, segments: torch.Tensor) -> SequenceLogprobs:
    """Sum per-token log-probs into per-sequence rationale and answer totals."""
    scored = segments[:, 1:]
    rows, cols = (scored != 0).nonzero(as_tuple=True)
    kind = scored[rows, cols]
    totals = []
    for code in (RATIONALE, ANSWER):
        weights = (kind == code).to(token_logprobs.dtype)
        sums = token_logprobs.new_zeros(segments.shape[0])
        totals.append(sums.index_add(0, rows, token_logprobs * weights))
    return SequenceLogprobs(totals[0], totals[1], token_logprobs)
