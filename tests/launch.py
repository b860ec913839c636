"""Multi-process launches for the tests: each in a subprocess with a timeout, so that a lost lockstep
fails the test instead of hanging it."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_launch(command: list[str], timeout: int, what: str, **env: str) -> str:
    """stdout + stderr of `command` run from the repository root with one thread per process and no
    hub access (plus `env`); fails the test if it exits non-zero or runs over `timeout` seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{what} hung (over {timeout} s): {' '.join(command)}\n{expired.stdout}\n{expired.stderr}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return output
