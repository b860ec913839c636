"""Peak memory of one LaTRO step on the shipped demo model, with and without --micro-batch-size.

    python benchmarks/microbatch_memory.py --sizes 0 16 4 --num-samples 16 --questions-per-step 4

Each setting runs in its own process (CPU, float32): the trainer is built, then the peak resident
set size is reset (/proc/self/clear_refs) and one training step runs; the figure is the peak RSS
of that step above the RSS before it. glibc is told to map every allocation over 64 KiB on its
own (MALLOC_MMAP_THRESHOLD_), so a freed tensor leaves the RSS and a later step cannot hide its
peak in memory cached by an earlier one. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MIB = 2**20


def rss_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def one_step(size: int, num_samples: int, questions: int, tokens: int) -> dict:
    from latro import demo
    from latro.algorithms import build_trainer
    from latro.config import TrainConfig

    cfg = TrainConfig(**{**demo.PRESET, "output_dir": tempfile.mkdtemp(), "num_samples": num_samples,
                         "questions_per_step": questions, "max_rationale_tokens": tokens, "micro_batch_size": size,
                         "eval_on_start": False, "eval_every": 0})
    trainer = build_trainer(cfg)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current RSS
    before = rss_kib("VmRSS")
    start = time.perf_counter()
    metrics = trainer.step(0)
    return {"micro_batch_size": size, "micro_batches": trainer.micro_batches_per_step,
            "rollouts": num_samples * questions, "rationale_tokens": metrics["rationale_tokens"],
            "step_peak_mib": round((rss_kib("VmHWM") - before) / 1024, 1),
            "step_s": round(time.perf_counter() - start, 2), "loss": metrics["loss"],
            **{key: round(metrics[key], 2) for key in ("time_generate", "time_score", "time_update")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 16, 4], help="micro-batch sizes (0 = none)")
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--questions-per-step", type=int, default=4)
    parser.add_argument("--max-rationale-tokens", type=int, default=64)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (args.num_samples, args.questions_per_step, args.max_rationale_tokens)
    if args.child is not None:
        print(json.dumps(one_step(args.child, *shape)))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(size), "--num-samples", str(shape[0]),
                              "--questions-per-step", str(shape[1]), "--max-rationale-tokens", str(shape[2])],
                             env=env, capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
