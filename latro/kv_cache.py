"""KV-cache helpers shared by the sampler (latro/rollout.py) and the branch scorer
(latro/scorer.py): left-padded prefill, row selection in a preallocated cache, and the cache
keyword of the installed transformers."""

from __future__ import annotations

import inspect

import torch
from transformers import StaticCache


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each [N, longest]: the sequences right-aligned, so that all end at the same position."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[row, width - len(s) :] = 1
    return ids, mask


def select_rows(cache: StaticCache, rows: torch.Tensor) -> None:
    """Keep (or repeat) the given batch rows of every layer's preallocated keys and values."""
    for layer in cache.layers:
        if getattr(layer, "is_initialized", False):
            layer.keys = layer.keys.index_select(0, rows)
            layer.values = layer.values.index_select(0, rows)
            layer.batch_size = len(rows)


def cache_keyword(model) -> str:
    # transformers 5.24 renamed `past_key_values` to `cache`; accept both generations.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"
