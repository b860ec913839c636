"""Run by tests/test_distributed.py under `accelerate launch --config_file
configs/accelerate/cpu-2proc.yaml` (2 processes, DDP over gloo on CPU): a step's metrics reduced
over the global batch equal the same statistics computed naively over both processes' samples.
Prints OK on success."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's latro

from accelerate import Accelerator  # noqa: E402

from latro.distributed import reduce_metrics  # noqa: E402
from latro.loop import cpu_launch_options  # noqa: E402

# Each process's samples: (reward, rationale length, stopped, answer right), different per process.
SAMPLES = {0: [(-1.0, 10, True, True), (-3.0, 24, False, False), (0.5, 7, True, True)],
           1: [(-2.0, 12, True, False), (-0.25, 9, True, True), (-4.0, 24, False, False)]}


def local_metrics(samples) -> dict:
    rewards = torch.tensor([s[0] for s in samples])
    return {"reward_mean": rewards.mean().item(), "reward_std": rewards.std().item(),
            "rationale_tokens": sum(s[1] for s in samples) / len(samples),
            "stopped_fraction": sum(s[2] for s in samples) / len(samples),
            "sample_accuracy": sum(s[3] for s in samples) / len(samples),
            "sampled_tokens": sum(s[1] for s in samples), "grad_norm": 3.0, "lr": 1e-4, "reward_auroc": None}


def main() -> None:
    accelerator = Accelerator(**cpu_launch_options())
    assert accelerator.num_processes == 2, accelerator.num_processes
    rank = accelerator.process_index
    reduced = reduce_metrics(local_metrics(SAMPLES[rank]), len(SAMPLES[rank]), accelerator)
    everything = SAMPLES[0] + SAMPLES[1]
    rewards = torch.tensor([s[0] for s in everything], dtype=torch.float64)
    naive = {"reward_mean": rewards.mean().item(), "reward_std": rewards.std().item(),
             "rationale_tokens": sum(s[1] for s in everything) / 6, "stopped_fraction": 4 / 6,
             "sample_accuracy": 3 / 6, "sampled_tokens": sum(s[1] for s in everything)}
    for name, value in naive.items():
        assert math.isclose(reduced[name], value, rel_tol=1e-6), (name, reduced[name], value)
    assert isinstance(reduced["sampled_tokens"], int)
    assert reduced["grad_norm"] == 3.0 and reduced["lr"] == 1e-4 and reduced["reward_auroc"] is None
    accelerator.wait_for_everyone()
    print(f"rank {rank} OK", flush=True)


if __name__ == "__main__":
    main()
