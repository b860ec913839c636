"""The built-in engine: latro's own sampler (latro/rollout.py) on the live policy."""

from __future__ import annotations

from latro.engines import register_engine
from latro.rollout import Sampler


@register_engine("builtin")
def builtin_engine(run) -> Sampler:
    # It samples from the policy being trained, so there are no weights to push after a step; with
    # a sharded policy every process runs the same number of forwards (lockstep).
    return Sampler(lambda: run.policy, run.tokenizer, stop_patterns=run.cfg.stop_patterns,
                   stop_token_ids=run.stop_ids, autocast=run.generation_context, synced=run.sharded)
