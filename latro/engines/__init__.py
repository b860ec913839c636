"""Rollout engines: what samples the K rationales of each question during training.

An engine is one file here, registered with `@register_engine("name")` on a factory that takes the
training loop (`run`: its cfg, tokenizer, stop_ids, policy, accelerator and `policy_weights()`) and
returns an object with the `RolloutEngine` method `generate` (latro/rollout.py). An engine that
holds its own copy of the weights also has `sync_weights()`, which the loop calls after every
applied optimizer step and before the first step of a run (fresh or resumed).

    --rollout-engine builtin   latro's own sampler on the live policy (latro/rollout.py)
    --rollout-engine vllm      vLLM colocated in the training process (latro/engines/vllm.py)
"""

from __future__ import annotations

from collections.abc import Callable

from latro.registry import Registry, import_all

ENGINES: Registry[Callable] = Registry("rollout engine")


def register_engine(name: str):
    return ENGINES.decorator(name)


import_all("latro.engines")
