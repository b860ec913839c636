"""Several processes on CPU (gloo): lockstep sampling and collective saving under torch's FSDP2,
metrics over the global batch under DDP. Each runs as 2 real processes in a subprocess with a
timeout, so that a lost lockstep fails the test instead of hanging it."""

from __future__ import annotations

import sys
from pathlib import Path

from launch import ROOT, free_port, run_launch

WORKERS = ROOT / "tests" / "distributed"
TIMEOUT = 240  # seconds; each run takes about 20-40 on a loaded 2-core machine


def run_two(command: list[str]) -> str:
    output = run_launch(command, TIMEOUT, "2-process run")
    assert "rank 0 OK" in output and "rank 1 OK" in output, output[-6000:]
    return output


def accelerate_bin() -> str:
    return str(Path(sys.executable).with_name("accelerate"))


def test_fsdp2_lockstep_sampling_evaluation_and_full_state_dict():
    """fully_shard'ed tiny model, ranks finishing at different lengths: the same tokens as
    unsharded, the same evaluation records, and the gathered state dict equals the weights."""
    run_two([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
             "--master_port", str(free_port()), str(WORKERS / "fsdp2_worker.py")])


def test_metrics_are_means_over_every_process_samples():
    """2 DDP processes on CPU started by configs/accelerate/cpu-2proc.yaml (no ACCELERATE_USE_CPU)."""
    run_two([accelerate_bin(), "launch", "--config_file", str(ROOT / "configs/accelerate/cpu-2proc.yaml"),
             "--main_process_port", str(free_port()), str(WORKERS / "metrics_worker.py")])
