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

import contextlib
from collections.abc import Callable
from types import SimpleNamespace

from latro.errors import UserError
from latro.registry import Registry, import_all

ENGINES: Registry[Callable] = Registry("rollout engine")


def register_engine(name: str):
    return ENGINES.decorator(name)


@contextlib.contextmanager
def evaluation_engine(cfg, tokenizer, model, accelerator=None, stop_patterns=()):
    """The engine `latro eval|dgdiff --rollout-engine NAME` generates with, outside training (None for
    builtin: latro's own decoder on `model`), closed on leaving the block. It loads the weights from
    cfg.model itself, stops at the model's stop tokens and `stop_patterns` (eval: none, the whole
    answer is read), and has no weights pushed."""
    if cfg.rollout_engine == "builtin":
        yield None
        return
    if accelerator is not None and accelerator.num_processes > 1:
        raise UserError(f"--rollout-engine {cfg.rollout_engine} evaluates in one process: start it without "
                        "accelerate launch")
    from latro.prompts import stop_token_ids

    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator()
    run = SimpleNamespace(cfg=SimpleNamespace(**{**vars(cfg), "stop_patterns": list(stop_patterns)}),
                          accelerator=accelerator, tokenizer=tokenizer, stop_ids=stop_token_ids(tokenizer, model),
                          policy_weights=None)
    engine = ENGINES[cfg.rollout_engine](run)
    try:
        yield engine
    finally:
        engine.close()


import_all("latro.engines")
