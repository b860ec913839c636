"""Training algorithms: what one optimizer step does. The loop (latro/loop.py) owns everything
around it (accelerate, data order, validation, checkpoints, signals, logging) and imports none
of them; an algorithm is a class with

    __init__(cfg, task, accelerator)      # settings-derived state; may reject settings
    needs_reference: bool                 # whether the loop keeps a frozen pi_0
    sequences_per_step(cfg) -> int        # (static) sequences per step and process, split into
                                          # --micro-batch-size micro-batches (run.update takes one
                                          # loss function per micro-batch)
    select_training(examples) -> examples # the training questions it can use
    bind(run)                             # the loop, once the model, optimizer and data exist
    step(batch: QuestionBatch) -> dict    # one optimizer step (through run.update), its metrics

registered with `@register_algorithm("name")`; `build_trainer(cfg, "name")` puts it in a loop.
"""

from __future__ import annotations

from latro.registry import Registry, import_all

ALGORITHMS: Registry[type] = Registry("algorithm")


def register_algorithm(name: str):
    return ALGORITHMS.decorator(name)


def build_trainer(cfg, algorithm: str = "latro"):
    """The training loop running the algorithm registered as `algorithm` with settings `cfg`."""
    from latro.loop import TrainingLoop

    return TrainingLoop(cfg, ALGORITHMS[algorithm])


import_all("latro.algorithms")
