"""Several processes: what the loop needs beyond `accelerator.prepare` when the model is sharded
(DeepSpeed ZeRO-3, FSDP2), and the reduction of per-process metrics.

Sharding engines do the sharding; this module only answers the questions they leave to the
training code (the same ones TRL answers in trl/models/utils.py):
- whether a forward is a collective, so that every process must make the same number of them
  (lockstep sampling, `latro.rollout.sample(synced=True)`);
- DeepSpeed's batch settings, which accelerate takes from a dataloader latro does not have;
- the frozen reference model pi_0, loaded again and sharded by the same engine for inference
  (a deep copy of a partitioned model holds no weights);
- a full state dict gathered from every process for saving.
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
from accelerate.utils import DistributedType

from latro.errors import UserError

# Metrics of a step that are means over this process's samples (every process has as many) and
# those that are totals; reduced over all processes. The rest (AUROCs, grad norm, lr, times)
# stay those of process 0: an AUROC of the union is not a function of the per-process ones, and
# the grad norm and lr are already global.
SAMPLE_MEANS = ("reward_mean", "kl", "answer_logp", "kl_k3", "rationale_tokens", "stopped_fraction", "loss",
                "sample_accuracy", "answer_parsed", "majority_agreement", "distinct_answers")
TOTALS = ("sampled_tokens", "dropped_groups", "rollout_tokens_per_s")


def is_deepspeed(accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def zero_stage(accelerator) -> int:
    if not is_deepspeed(accelerator):
        return 0
    return int(accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0))


def is_sharded(accelerator) -> bool:
    """Whether each process holds only a shard of the weights, so that every forward gathers
    them from all processes (a collective every process must take part in)."""
    return zero_stage(accelerator) == 3 or accelerator.distributed_type == DistributedType.FSDP


def configure_deepspeed(accelerator, micro_batch: int, max_grad_norm: float) -> None:
    """Fills what DeepSpeed asks of a config and accelerate would take from a dataloader: the
    micro-batch (this process's questions per step), clipping (--max-grad-norm) and one
    gradient-accumulation step (latro scales its own loss, and `TrainingLoop.backward` marks the
    micro-batch where DeepSpeed's engine steps). Values set in a user's config stay, but for an
    accumulation other than 1, which would divide latro's loss once more."""
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    for key, value in (("train_micro_batch_size_per_gpu", micro_batch), ("gradient_accumulation_steps", 1),
                       ("gradient_clipping", max_grad_norm)):
        if config.get(key, "auto") == "auto":
            config[key] = value
    if config["gradient_accumulation_steps"] != 1:
        raise UserError(f"the DeepSpeed config sets gradient_accumulation_steps to "
                        f"{config['gradient_accumulation_steps']}: set it to auto (or 1); latro accumulates a "
                        "step's micro-batches itself (--micro-batch-size)")
    if zero_stage(accelerator) == 3:  # the full weights are gathered for every save of a model
        config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True


def prepare_reference(accelerator, scorer: torch.nn.Module) -> torch.nn.Module:
    """The reference scorer sharded for inference by the engine that shards the policy.
    Its model must have been loaded afresh from the model path (under ZeRO-3, transformers'
    `from_pretrained` already partitions it as it loads)."""
    scorer.eval().requires_grad_(False)
    if is_deepspeed(accelerator):
        import deepspeed

        config = copy.deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)
        config.pop("optimizer", None)
        config.pop("scheduler", None)
        if zero_stage(accelerator) != 3:  # the reference is small enough to be whole on every process
            config["zero_optimization"] = {"stage": 0}
        engine, *_ = deepspeed.initialize(model=scorer, config=config)
        return engine.eval()
    if accelerator.distributed_type == DistributedType.FSDP:
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model

        if not accelerator.is_fsdp2:
            raise NotImplementedError("FSDP1: use fsdp_version 2 (configs/accelerate/fsdp2.yaml)")
        return fsdp2_prepare_model(accelerator, scorer.to(accelerator.device)).eval()
    return scorer.to(accelerator.device)


@contextlib.contextmanager
def gathered_root(module: torch.nn.Module):
    """Under FSDP2 the root module's own parameters (embeddings, head, final norm: those of no
    inner sharded layer) are gathered only by the root's forward; sampling calls the wrapped
    model directly, so gather them for its duration (inner layers gather themselves)."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(module, FSDPModule):
        yield
        return
    module.unshard()
    try:
        yield
    finally:
        module.reshard()


def full_state_dict(accelerator, prepared: torch.nn.Module, prefix: str = "model.") -> dict | None:
    """The whole model's state dict (keys without `prefix`, the scorer's attribute) gathered from
    every process; a collective: every process must call it. None where a process gets none."""
    state = accelerator.get_state_dict(prepared)
    if state is None or not len(state):
        return None
    return {k.removeprefix(prefix): v for k, v in state.items()}


def local_tensors(tensors) -> list[torch.Tensor]:
    """This process's shard of each tensor (DeepSpeed ZeRO-3 partitions, FSDP2 DTensor locals),
    so that a finiteness check looks at every weight once without gathering any."""
    out = []
    for t in tensors:
        if hasattr(t, "ds_tensor"):
            t = t.ds_tensor
        elif hasattr(t, "to_local"):
            t = t.to_local()
        out.append(t)
    return out


def reduce_metrics(metrics: dict, count: int, accelerator) -> dict:
    """A step's metrics over the global batch: each per-sample mean (of this process's `count`
    samples) as the mean over every process's samples, totals summed, and `reward_std` the
    standard deviation of all the rewards (pooled from the sums of squares)."""
    if accelerator.num_processes == 1:
        return metrics
    means = [k for k, v in metrics.items() if (k in SAMPLE_MEANS or k.startswith("reward/")) and v is not None]
    totals = [k for k in TOTALS if k in metrics]
    pooled_std = "reward_std" in metrics and "reward_mean" in metrics
    local = [metrics[k] * count for k in means] + [float(metrics[k]) for k in totals] + [float(count)]
    if pooled_std:  # sum of squared rewards, from this process's mean and (n - 1) standard deviation
        std = 0.0 if count < 2 else metrics["reward_std"]
        local.append(std**2 * (count - 1) + metrics["reward_mean"] ** 2 * count)
    summed = accelerator.reduce(torch.tensor(local, dtype=torch.float64, device=accelerator.device), "sum").tolist()
    samples = summed[len(means) + len(totals)]
    reduced = dict(metrics)
    reduced.update({k: summed[i] / samples for i, k in enumerate(means)})
    reduced.update({k: summed[len(means) + i] for i, k in enumerate(totals)})
    reduced.update({k: round(reduced[k]) for k in totals if isinstance(metrics[k], int)})
    if pooled_std:
        mean = reduced["reward_mean"]
        reduced["reward_std"] = math.sqrt(max(0.0, (summed[-1] - samples * mean**2) / (samples - 1))) \
            if samples > 1 else math.nan
    return reduced
