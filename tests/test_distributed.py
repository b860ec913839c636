"""Several processes on CPU (gloo): lockstep sampling and collective saving under torch's FSDP2,
metrics over the global batch under DDP. Each runs as 2 real processes in a subprocess with a
timeout, so that a lost lockstep fails the test instead of hanging it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ROOT / "tests" / "distributed"
TIMEOUT = 240  # seconds; each run takes about 20-40 on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two(command: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"2-process run hung (over {TIMEOUT} s): {' '.join(command)}\n{expired.stdout}\n{expired.stderr}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
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
