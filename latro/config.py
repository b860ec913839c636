"""Configuration: dataclasses whose fields carry help text, loadable from YAML, overridable by flags.

Method settings cite LaTRO (Chen et al., 2024, arXiv 2411.04282, "the paper" below).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


STOP_PATTERNS = ("The answer is", "Answer:", "Therefore, the answer is")  # the paper's


def _f(default, help: str, **kw):
    if callable(default):  # a factory, for mutable defaults
        return field(default_factory=default, metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelConfig:
    model: str | None = _f(None, "Hub id, local directory, or .gguf file of a causal LM "
                                        "(`latro train` without one runs the built-in demonstration).")
    tokenizer: str | None = _f(None, "Tokenizer to use, if not the model's own.")
    dtype: str = _f("float32", "Weights dtype: float32, bfloat16 or float16 (the paper: bf16 on H100).",
                    choices=["float32", "bfloat16", "float16"])
    trust_remote_code: bool = _f(False, "Run model code from the hub. Off unless you trust the repo.")
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward to save memory.")
    lora_r: int = _f(0, "LoRA rank; 0 trains all weights (the paper trains all weights).")
    lora_alpha: int = _f(32, "LoRA alpha (scale alpha/r).")
    lora_dropout: float = _f(0.0, "LoRA dropout.")
    lora_target_modules: str = _f("all-linear", "Comma-separated module names for LoRA, or all-linear.")
    merge_lora: bool = _f(True, "Save the final model with the LoRA adapter merged (else the adapter alone).")


@dataclass
class TaskConfig:
    task: str = _f("gsm8k", "Task name: gsm8k, arc_challenge or jsonl.")
    data_dir: str | None = _f(None, "Local directory with the task's original files (else the hub).")
    train_file: str | None = _f(None, "jsonl task: training questions.")
    validation_file: str | None = _f(None, "jsonl task: validation questions (checkpoint selection).")
    test_file: str | None = _f(None, "jsonl task: test questions.")
    chat_template: bool = _f(True, "Wrap prompts in the tokenizer's chat template when it has one.")


@dataclass
class CoVoConfig:
    """Settings of the covo reward (Zhang et al., 2025, arXiv 2506.08745)."""

    covo_aggregation: str = _f("vector", "How Con/Vol of a cluster's samples become its reward: vector "
                                         "(the paper's preferred form) or linear.", choices=["vector", "linear"])
    covo_binarize: bool = _f(False, "Reward 1 when the cluster reward is >= 0.5 (linear: >= 0.05), else 0, "
                                    "as the public CoVo code does.")
    covo_curiosity: float = _f(0.0, "Weight of CoVo's curiosity bonus (step perplexity minus "
                                    "ln(KL(P||U)^(1/3)+1)); 0 = off, as in the public code's effect.")
    covo_max_states: int = _f(15, "Most intermediate states per sample; longer rationales are merged into "
                                  "this many chunks of lines (the paper: T = 15).")
    covo_answer_prefix: str = _f("The answer is ", "Text after each state before a candidate answer. The paper "
                                                   "uses 'The answer is: '; the default is the phrase latro's task "
                                                   "prompts ask for, which a model scores in its own format (on the "
                                                   "demo model the reward's AUROC for right answers: 0.79 vs 0.59).")
    covo_batch_size: int = _f(64, "Sequences per no-grad teacher-forced pass of the CoVo distances.")


@dataclass
class TrainConfig(CoVoConfig, ModelConfig, TaskConfig):
    output_dir: str = _f("runs/latro", "Run directory: config, metrics, evaluations, checkpoints, model.")
    resume: bool = _f(False, "Continue from the latest checkpoint in output_dir.")
    seed: int = _f(0, "Seed for data order, sampling and initialisation.")
    # --- LaTRO objective (the paper, Prop. 2)
    reward: str = _f("latro", "Reward, or weighted rewards as 'name:weight,...': latro = log p(gold answer | "
                              "question, rationale) (the paper); covo = consistency/volatility (arXiv 2506.08745); "
                              "majority = agrees with the group's majority answer (TTRL, arXiv 2504.16084); "
                              "self_certainty = mean KL(uniform || p) (Intuitor, arXiv 2505.19590); gold = correct "
                              "final answer (needs labels).")
    estimator: str | None = _f(None, "Advantage estimator: rloo (leave-one-out, LaTRO), group_norm (GRPO), "
                                     "batch_whiten (REINFORCE++, CoVo); default: the first reward's paper.",
                               choices=["rloo", "group_norm", "batch_whiten"])
    answer_tokens: int = _f(32, "After a rationale's stop pattern keep sampling up to this many tokens to read "
                                "the model's own answer (own-answer rewards, and the per-step accuracy / AUROC "
                                "monitoring); 0 = stop at the pattern (LaTRO's fastest path, latro reward only).")
    num_samples: int = _f(16, "K rationales sampled per question (the paper: K=16).")
    questions_per_step: int = _f(3, "Questions per optimizer step (the paper: 3 per device, 48 rollouts).")
    temperature: float = _f(1.0, "Sampling temperature of rationales (the paper: 1).")
    max_rationale_tokens: int = _f(500, "L, rationale budget in tokens (the paper: 500; plateaus above).")
    stop_patterns: list[str] = _f(
        lambda: list(STOP_PATTERNS),
        "Text that ends a rationale, excluded from it (the paper); EOS and end-of-turn always stop.")
    beta: float | None = _f(None, "KL weight to the frozen initial model; default per task as in the paper: "
                                  "0.05 GSM8K, 0.25 ARC-Challenge (0.05 otherwise); 1e-4 with covo first "
                                  "(the CoVo paper).")
    nonstop_gamma: float = _f(2.0, "A rationale with no stop within L gets gamma x batch mean reward (the paper: 2).")
    answer_weight: float = _f(1.0, "Weight of the answer-likelihood term on own rationales (the paper: 1; "
                                   "the public code: 0).")
    # --- optimisation (the paper: AdamW, lr 5e-7, no warm-up, linear decay)
    lr: float = _f(5e-7, "AdamW learning rate (the paper: 5e-7).")
    weight_decay: float = _f(0.0, "AdamW weight decay (not given by the paper).")
    warmup_steps: int = _f(0, "Linear warm-up steps (the paper: none).")
    lr_schedule: str = _f("linear", "linear decay to 0 (the paper) or constant.", choices=["linear", "constant"])
    max_grad_norm: float = _f(1.0, "Gradient clipping norm, 0 = off (not given by the paper).")
    max_nonfinite_steps: int = _f(3, "A step whose loss or gradient norm is NaN or infinite is skipped (not applied, "
                                     "counted as skipped_nonfinite in metrics); this many in a row stop the run "
                                     "with an error (0 = never stop).")
    epochs: float = _f(1.0, "Passes over the training questions (the paper: up to 6 GSM8K, 12 ARC).")
    max_steps: int = _f(0, "Stop after this many optimizer steps (0 = from epochs).")
    train_limit: int = _f(0, "Use only the first N training questions (0 = all).")
    score_chunk_size: int = _f(512, "Positions per output-head chunk in the scorer (memory vs speed).")
    # --- evaluation during training (checkpoint selection on validation, never test)
    eval_every: int = _f(50, "Evaluate greedy accuracy on validation every N steps (0 = only at the end).")
    eval_limit: int = _f(200, "Validation questions per evaluation (0 = all).")
    eval_on_start: bool = _f(False, "Also evaluate the initial model before step 1: a step-0 point in metrics and "
                                    "plots, and the initial model can be the best checkpoint.")
    eval_max_new_tokens: int = _f(512, "Generation budget for evaluation answers.")
    eval_batch_size: int = _f(16, "Questions per generation batch in evaluation.")
    save_every: int = _f(50, "Write a resumable checkpoint every N steps (and at the end).")
    keep_checkpoints: int = _f(2, "Resumable checkpoints to keep (older ones are deleted).")
    report_to: str = _f("none", "Trackers: none, tensorboard, wandb, trackio (comma-separated).")


@dataclass
class EvalConfig(ModelConfig, TaskConfig):
    split: str = _f("test", "Split to evaluate: train, validation or test.")
    limit: int = _f(0, "Evaluate only the first N questions (0 = all).")
    samples: int = _f(8, "K samples per question at temperature 1 for maj@K and pass@K (0 = greedy only; "
                         "the paper: maj@8).")
    sample_temperature: float = _f(1.0, "Temperature of the K samples (the paper: 1).")
    max_new_tokens: int = _f(512, "Generation budget per answer.")
    batch_size: int = _f(16, "Questions per generation batch.")
    seed: int = _f(0, "Sampling seed.")
    output: str | None = _f(None, "JSON file for the numbers and every generation (default: next to the model).")


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per dataclass field; defaults are suppressed so YAML values survive."""
    parser.add_argument("--config", help="YAML file of settings; flags given here override it.")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"help": f.metadata.get("help", ""), "default": argparse.SUPPRESS, "dest": f.name}
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if f.type in ("bool", bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            kw["nargs"] = "*"
        elif str(f.type).startswith(("int", "float")):
            kw["type"] = int if str(f.type).startswith("int") else float
        kw["help"] += f" [default: {default}]"
        parser.add_argument(flag, **kw)


def from_args(cls, args: argparse.Namespace, preset: dict[str, Any] | None = None):
    """Dataclass from defaults <- preset <- YAML file <- flags."""
    values: dict[str, Any] = dict(preset or {})
    if getattr(args, "config", None):
        values.update(load_yaml(args.config, cls))
    values.update({k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(cls)}})
    return cls(**values)


def load_yaml(path: str | Path, cls) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of setting: value")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown settings {unknown}")
    return data


def save_yaml(config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))


@dataclass
class DGDiffConfig(CoVoConfig, ModelConfig, TaskConfig):
    """SELF-[IN]CORRECT (Jiang et al., 2024, arXiv 2404.04298): generation vs discrimination."""

    split: str = _f("test", "Split to evaluate: train, validation or test.")
    limit: int = _f(0, "Evaluate only the first N questions (0 = all).")
    candidates: int = _f(4, "n candidates sampled per question (the paper: 4).")
    temperature: float = _f(0.7, "Sampling temperature of the candidates (the paper: 0.7).")
    max_new_tokens: int = _f(512, "Rationale budget of each candidate, in tokens.")
    answer_tokens: int = _f(32, "Tokens allowed for the final answer after the rationale's stop pattern.")
    stop_patterns: list[str] = _f(
        lambda: list(STOP_PATTERNS), "Text that ends a candidate's rationale (what latro and covo score), as in training.")
    discriminators: str = _f("prompt,prompt_forced,latro,covo,self_certainty,majority,latro_gold",
                             "Comma-separated: prompt (the paper's multiple-choice prompt, answered greedily by "
                             "the same model), prompt_forced (the same prompt, the reply forced to '### ' and "
                             "the likeliest index taken), latro (log p(own answer | rationale)), covo, self_certainty, "
                             "majority, latro_gold (log p(gold answer | rationale): uses the labels, a check of "
                             "the LaTRO training reward, not a deployable discriminator).")
    judge_max_new_tokens: int = _f(512, "Generation budget of the prompt discriminator's reasoning and choice.")
    batch_size: int = _f(16, "Questions per generation batch.")
    seed: int = _f(0, "Seed of the candidates' sampling and of S_gen's random pick.")
    output: str | None = _f(None, "JSON file with every candidate and choice (default: next to the model).")
