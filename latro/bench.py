"""Benchmark: time LaTRO training steps per phase, and in the same process the bare parts no
step can avoid (transformers' `generate` for the same number of tokens, one forward+backward
and AdamW step over the same sequences, one reference forward), plus peak memory.

    latro bench --model SmolLM2-135M-Instruct.Q4_1.gguf --task gsm8k --data-dir data/gsm8k \
        --questions-per-step 2 --num-samples 4 --max-rationale-tokens 200 --lr 5e-7 --beta 0.05
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from latro.config import TrainConfig


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _bare_parts(trainer, batch, rollouts) -> dict:
    """Plain transformers on the step's own prompts and sequences."""
    policy, tok = trainer.policy, trainer.tokenizer
    longest = max(r.num_sampled for r in rollouts)
    prompts = [r.prompt_ids for r in rollouts]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    policy.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        policy.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                        max_new_tokens=longest, min_new_tokens=longest, pad_token_id=tok.pad_token_id)
    t1 = time.perf_counter()
    labels = batch.input_ids.masked_fill(batch.segments == 0, -100)
    policy.train()
    flag = ("is_activation_checkpointing" if hasattr(policy, "is_activation_checkpointing")
            else "is_gradient_checkpointing")
    checkpointing = getattr(policy, flag, False)
    if checkpointing:  # the bare pass is plain transformers, without recomputation
        policy.gradient_checkpointing_disable()
    t_pass = time.perf_counter()  # the toggling above belongs to neither timed part
    out = policy(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels)
    out.loss.backward()
    t2 = time.perf_counter()
    if checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    t_step = time.perf_counter()
    trainer.optimizer.step()  # lr is tiny; this perturbs nothing that is measured afterwards
    trainer.optimizer.zero_grad(set_to_none=True)
    t3 = time.perf_counter()
    ref = trainer.ref if trainer.ref is not None else policy
    with torch.no_grad():
        ref(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    t4 = time.perf_counter()
    return {"generate": t1 - t0, "forward_backward": t2 - t_pass, "optimizer": t3 - t_step,
            "reference_forward": t4 - t3, "generated_tokens": longest * len(rollouts)}


def phase_ratios(step: dict, bare: dict) -> dict:
    """How close each phase of a step is to the bare part it cannot do without (1.0 = as fast as
    the bare part; below 1 = faster): sampling by time per generated token against transformers'
    `generate` on the same prompts, and the training passes (scoring + update) against one bare
    forward+backward, AdamW step and reference forward over the same sequences."""
    per_token = step["time_generate"] / max(step["sampled_tokens"], 1)
    bare_per_token = bare["generate"] / max(bare["generated_tokens"], 1)
    training = step["time_score"] + step["time_update"]
    bare_training = bare["forward_backward"] + bare["optimizer"] + bare["reference_forward"]
    return {"sampling_per_token": per_token / bare_per_token, "training_passes": training / bare_training}


def _time_steps(trainer, repeats: int) -> tuple[list[dict], list]:
    """`repeats` training steps; each step's metrics (plus its total) and trajectories."""
    steps, history = [], []
    for i in range(repeats):
        metrics = trainer.step(i)
        history.append(trainer.algorithm.last_trajectories)
        metrics["total"] = metrics["time_generate"] + metrics["time_score"] + metrics["time_update"]
        steps.append(metrics)
        print(f"step {i + 1}: generate {metrics['time_generate']:.1f}s  score {metrics['time_score']:.1f}s  "
              f"update {metrics['time_update']:.1f}s  total {metrics['total']:.1f}s  "
              f"{metrics['rollout_tokens_per_s']:.0f} rollout tok/s  rationale {metrics['rationale_tokens']:.0f} tok",
              flush=True)
    return steps, history


def _compare_with_bare_parts(trainer, steps: list[dict], history: list, result: dict) -> None:
    """Times the bare parts of every step's own sequences and adds them, and the ratios, to `result`."""
    bare = []
    for trajectories in history:
        parts = _bare_parts(trainer, trajectories, trajectories.rollouts)
        parts["sum"] = parts["generate"] + parts["forward_backward"] + parts["optimizer"] + parts["reference_forward"]
        bare.append(parts)
    ratios = [phase_ratios(s, b) for s, b in zip(steps, bare)]
    result.update(bare=bare, median_bare_sum_s=_median(bare, "sum"),
                  step_over_bare=statistics.median(s["total"] / b["sum"] for s, b in zip(steps, bare)),
                  phase_over_bare={k: statistics.median(r[k] for r in ratios) for k in ratios[0]})
    print(f"bare parts, median: {result['median_bare_sum_s']:.1f}s (generate {_median(bare, 'generate'):.1f}, "
          f"forward+backward {_median(bare, 'forward_backward'):.1f}, AdamW {_median(bare, 'optimizer'):.1f}, "
          f"reference forward {_median(bare, 'reference_forward'):.1f}); generate "
          f"{statistics.median(b['generated_tokens'] / b['generate'] for b in bare):.0f} tok/s")
    print(f"latro step / bare sum: {result['step_over_bare']:.2f}")
    print(f"per phase / its bare part: sampling time per token {result['phase_over_bare']['sampling_per_token']:.2f}, "
          f"training passes (score + update) {result['phase_over_bare']['training_passes']:.2f}")


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def run_bench(cfg: TrainConfig, repeats: int = 5, bare_parts: bool = True, output: str | None = None) -> dict:
    """Times `repeats` steps (and, with `bare_parts`, the bare parts of each); writes the result
    as JSON to `output` (default: bench.json in a new temporary directory)."""
    from latro.algorithms import build_trainer

    cfg = replace(cfg, output_dir=tempfile.mkdtemp(prefix="latro-bench-"), eval_every=0,
                  max_steps=max(cfg.max_steps, repeats))
    torch.manual_seed(cfg.seed)
    trainer = build_trainer(cfg)
    steps, history = _time_steps(trainer, repeats)
    peak = peak_rss_gib()
    result = {
        "config": {k: getattr(cfg, k) for k in ("model", "dtype", "questions_per_step", "num_samples",
                                                  "max_rationale_tokens", "lr", "beta", "lora_r",
                                                  "gradient_checkpointing")},
        "steps": steps, "peak_rss_gib_latro": peak, "median_step_s": _median(steps, "total"),
    }
    if torch.cuda.is_available():  # the memory a GPU run is short of; RSS is the host's
        result["peak_gpu_allocated_gib_latro"] = torch.cuda.max_memory_allocated() / 2**30
    print(f"\nlatro step, median of {repeats}: {result['median_step_s']:.1f}s "
          f"(generate {_median(steps, 'time_generate'):.1f}, score {_median(steps, 'time_score'):.1f}, "
          f"update {_median(steps, 'time_update'):.1f}); rollout {_median(steps, 'rollout_tokens_per_s'):.0f} tok/s; "
          f"peak RSS during latro steps: {peak:.2f} GiB")
    if bare_parts:
        _compare_with_bare_parts(trainer, steps, history, result)
    out = Path(output) if output else Path(cfg.output_dir) / "bench.json"
    out.write_text(json.dumps(result, indent=1))
    if output:  # the temporary run directory holds nothing else
        shutil.rmtree(cfg.output_dir, ignore_errors=True)
    print(f"written to {out}")
    return result
