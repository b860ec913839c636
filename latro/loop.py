"""The training loop, apart from any algorithm: accelerate set-up, data order, validation,
checkpoints, signals, logging and progress. Each step it calls `algorithm.step(batch) -> metrics`
(latro/algorithms/); the algorithm updates the weights through `update`.

    latro train --model HuggingFaceTB/SmolLM2-135M-Instruct --task gsm8k --num-samples 4
    accelerate launch -m latro.cli train --config run.yaml      # DDP / DeepSpeed / FSDP
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import random
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, set_seed
from tqdm.auto import tqdm

from latro import checkpoint as ckpt
from latro.card import card_files, push_model, run_info
from latro.checkpoint import NonFiniteError, RunStopped
from latro.config import TrainConfig, check_resume, save_yaml
from latro.distributed import (
    configure_deepspeed,
    full_state_dict,
    gathered_root,
    is_deepspeed,
    is_sharded,
    local_tensors,
    prepare_reference,
)
from latro.engines import ENGINES
from latro.errors import UserError
from latro.evaluate import evaluate
from latro.modeling import (
    add_lora,
    context_length,
    frozen_copy,
    load_model,
    load_tokenizer,
    merged_weights,
    nonfinite_tensors,
    save_model,
)
from latro.prompts import encode_prompt, end_of_turn_id, stop_token_ids
from latro.rewards import parse_rewards
from latro.scorer import TokenScorer
from latro.tasks import Example, Task, task_from_config, with_prompt_settings

BEST_FILE = "best.json"  # in best-model/: the step and validation accuracy that chose it


@dataclass
class QuestionBatch:
    """This process's questions at one step."""

    step: int  # 0-based optimizer step
    indices: list[int]  # positions in the training set
    examples: list[Example]
    prompts: list[list[int]]  # their prompt ids


def mixed_precision(cfg) -> str:
    """accelerate's mixed-precision mode: float32 master weights, compute in the asked dtype."""
    if cfg.pure_dtype or cfg.dtype == "float32":
        return "no"
    return {"bfloat16": "bf16", "float16": "fp16"}[cfg.dtype]


def warn_if_updates_round_away(params, lr: float, report) -> None:
    """Low-precision weights only move when an update exceeds half a unit in their last place;
    an AdamW step moves a weight by about lr, so count the weights that lr cannot move."""
    with torch.no_grad():
        stuck = sum(int(((p + lr) == p).sum()) for p in params)
        total = sum(p.numel() for p in params)
    if total and stuck / total > 0.5:
        report(f"warning: --pure-dtype with lr {lr:g}: an update of lr rounds to nothing for "
               f"{100 * stuck / total:.1f}% of the {params[0].dtype} weights; drop --pure-dtype to train "
               "float32 master weights in mixed precision")


def micro_batches_per_step(cfg, algorithm) -> int:
    """Backward calls per optimizer step on each process: ceil(sequences per step on a process /
    --micro-batch-size), 1 without micro-batches. accelerate's gradient accumulation (and DeepSpeed's
    gradient_accumulation_steps) must count these, so that gradients are exchanged and DeepSpeed
    steps only after the last one."""
    sequences = algorithm.sequences_per_step(cfg)
    return math.ceil(sequences / cfg.micro_batch_size) if cfg.micro_batch_size else 1


def deepspeed_launch() -> bool:
    """Started by `accelerate launch --use_deepspeed` (or a DeepSpeed config file)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"


def cpu_launch_options() -> dict:
    """Accelerator options for processes started by `accelerate launch` on a machine without CUDA,
    where accelerate would count one process each: plain data parallelism runs on CPU over gloo
    (as ACCELERATE_USE_CPU=1 would ask), and DeepSpeed (DS_ACCELERATOR=cpu) is told its backend."""
    if torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return {}
    if deepspeed_launch():
        return {"kwargs_handlers": [InitProcessGroupKwargs(backend="gloo")]}
    return {"cpu": True}


class TrainingLoop:
    def __init__(self, cfg: TrainConfig, algorithm, task: Task | None = None):
        """`algorithm`: a class of latro.algorithms (e.g. LaTRO, SFT), built here with the task;
        `task`: in place of the one `cfg.task` names (in-memory data from the Python API)."""
        if not cfg.model:
            raise UserError("no model given: pass --model (hub id, directory or .gguf file)")
        self.cfg = cfg
        self.run_dir = Path(cfg.output_dir)
        trackers = [t for t in cfg.report_to.split(",") if t and t != "none"]
        self.micro_batches_per_step = micro_batches_per_step(cfg, algorithm)
        # The schedule follows the step count: one scheduler step per training step, whatever the
        # number of processes and whether the step was applied or skipped.
        # DeepSpeed's engine is told the accumulation boundary itself (see `backward`).
        accumulation = 1 if deepspeed_launch() else self.micro_batches_per_step
        self.accelerator = Accelerator(log_with=trackers or None, project_dir=str(self.run_dir),
                                       mixed_precision=mixed_precision(cfg), step_scheduler_with_optimizer=False,
                                       gradient_accumulation_steps=accumulation,
                                       **cpu_launch_options())
        if cfg.resume:  # before anything is loaded or written
            check_resume(cfg, self.run_dir / "config.yaml", self.accelerator.print)
        set_seed(cfg.seed)
        if task is not None and task.prompt_format is None:
            task = with_prompt_settings(task, cfg)
        self.task = task or task_from_config(cfg)
        self.algorithm = algorithm(cfg, self.task, self.accelerator)
        self.label = self.algorithm.label
        self.tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, cfg.trust_remote_code)
        model = load_model(cfg.model, cfg.dtype if cfg.pure_dtype else "float32", cfg.trust_remote_code)
        self._load_data(context_length(model))
        self._build_model(model)
        self.engine = None  # the rollout engine, built when the algorithm asks for one (make_engine)
        self.algorithm.bind(self)
        self.step_index, self.best_accuracy = 0, -1.0
        self.last_validation: dict | None = None  # step, accuracy and size of the latest validation
        self.skipped_nonfinite = self.nonfinite_in_a_row = 0  # steps not applied: in all, and lately
        self.step_skipped = False
        self._stop_signal = 0

    # ----------------------------------------------------------------- setup
    def _load_data(self, context: int):
        cfg = self.cfg
        self.train_set = self.algorithm.select_training(self.task.load("train"))
        if cfg.train_limit:
            self.train_set = self.train_set[: cfg.train_limit]
        self.validation_set = self.task.load("validation")
        self._keep_shots_out()
        if cfg.eval_limit:
            self.validation_set = self.validation_set[: cfg.eval_limit]
        self.prompts = [encode_prompt(self.tokenizer, self.task, ex, cfg.chat_template) for ex in self.train_set]
        budget = cfg.max_rationale_tokens + max(32, cfg.answer_tokens)  # room for the answer
        fits = [i for i, p in enumerate(self.prompts) if len(p) + budget <= context]
        self.skipped_long = len(self.train_set) - len(fits)
        if self.skipped_long:
            self.accelerator.print(f"skipping {self.skipped_long} training questions whose prompt + "
                                   f"{budget} tokens exceeds the {context}-token context")
            self.train_set = [self.train_set[i] for i in fits]
            self.prompts = [self.prompts[i] for i in fits]
        per_step = cfg.questions_per_step * self.accelerator.num_processes
        if len(self.train_set) < per_step:
            raise UserError(f"{len(self.train_set)} training questions, fewer than one step's {per_step} "
                            "(--questions-per-step on each process)")
        self.steps_per_epoch = len(self.train_set) // per_step
        self.total_steps = cfg.max_steps or max(1, math.floor(cfg.epochs * self.steps_per_epoch))
        self.first_prompt = self.tokenizer.decode(self.prompts[0])  # exactly what the model sees; saved at start
        self.accelerator.print(f"prompt of the first training question:\n{self.first_prompt}\n")

    def _keep_shots_out(self) -> None:
        """Few-shot examples never come from validation (refused); a training question that is one of
        them is dropped, since its worked answer would be in its own prompt."""
        shots = self.task.prompt_format
        if shots is None or not shots.shots:
            return
        shots.refuse_overlap(self.validation_set, "validation")
        shown = shots.overlap(self.train_set)
        if shown:
            self.accelerator.print(f"dropping {len(shown)} training questions that are few-shot examples "
                                   f"({', '.join(shown.values())})")
            self.train_set = [ex for i, ex in enumerate(self.train_set) if i not in shown]

    def _build_model(self, model):
        cfg, accelerator = self.cfg, self.accelerator
        # Sharded (ZeRO-3, FSDP): forwards are collectives, the reference is loaded again and
        # sharded, and saving gathers the full weights on every process.
        self.sharded, self.deepspeed = is_sharded(accelerator), is_deepspeed(accelerator)
        if self.deepspeed:
            configure_deepspeed(accelerator, cfg.questions_per_step, cfg.max_grad_norm)
        if self.sharded and cfg.lora_r > 0 and cfg.merge_lora:
            raise UserError("--lora-r with a sharded model (DeepSpeed ZeRO-3 or FSDP): the adapter cannot be merged "
                            "into partitioned weights; pass --no-merge-lora to save the adapter alone")
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        self.ref = None
        if cfg.lora_r > 0:
            model = add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        elif self.algorithm.needs_reference and not self.sharded:
            self.ref = frozen_copy(model).to(self.accelerator.device)
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.pure_dtype:
            warn_if_updates_round_away(params, cfg.lr, self.accelerator.print)
        # fused: one in-place kernel per tensor, no temporary copies of the whole model.
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        warmup, total = cfg.warmup_steps, self.total_steps

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if cfg.lr_schedule == "constant":
                return 1.0
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        scorer = TokenScorer(model, cfg.score_chunk_size)
        self.scorer, self.optimizer, self.scheduler = self.accelerator.prepare(scorer, optimizer, scheduler)
        accumulation = self.accelerator.gradient_accumulation_steps  # a DeepSpeed config may set its own
        if not self.deepspeed and accumulation != self.micro_batches_per_step:
            raise UserError(f"gradient_accumulation_steps is {accumulation} (set by the accelerate or DeepSpeed "
                            f"config), but a step makes {self.micro_batches_per_step} backward call(s) "
                            "(--micro-batch-size): set gradient_accumulation_steps to auto")
        self.ref_scorer = TokenScorer(self.ref, cfg.score_chunk_size) if self.ref is not None else None
        if self.sharded and cfg.lora_r == 0 and self.algorithm.needs_reference:
            # A copy of a partitioned model holds no weights: pi_0 is loaded again from the model
            # path and sharded for inference by the same engine (as TRL's prepare_deepspeed/_fsdp).
            ref = load_model(cfg.model, cfg.dtype if cfg.pure_dtype else "float32", cfg.trust_remote_code)
            self.ref_scorer = prepare_reference(accelerator, TokenScorer(ref, cfg.score_chunk_size))
            self.ref = ref  # (its weights live in, and are gathered by, ref_scorer)
        self.stop_ids = stop_token_ids(self.tokenizer, model)
        self.end_id = end_of_turn_id(self.tokenizer, cfg.chat_template)  # closes the forced answer

    @property
    def policy(self):
        return self.accelerator.unwrap_model(self.scorer).model

    @contextlib.contextmanager
    def generation_context(self):
        """Where the policy generates outside the prepared forward: autocast (accelerate's forward
        has it), and under FSDP2 the root's own weights gathered."""
        with self.accelerator.autocast(), gathered_root(self.scorer):
            yield

    # ----------------------------------------------------------------- rollout engine
    def make_engine(self):
        """The rollout engine that --rollout-engine names (latro/engines/), for an algorithm that samples."""
        self.engine = ENGINES[self.cfg.rollout_engine](self)
        return self.engine

    def policy_weights(self):
        """The policy's full weights under the plain model's names, a LoRA adapter merged in (for an engine
        that keeps its own copy). Every process must call it: gathering sharded weights is collective."""
        state = full_state_dict(self.accelerator, self.scorer)
        if state is None:  # DeepSpeed ZeRO-3 consolidates the full weights on the first process only
            raise UserError("this rollout engine needs the full weights on every process, which this sharding "
                            "gathers on the first process only: use --rollout-engine builtin")
        return merged_weights(state, self.policy)

    def sync_engine(self) -> None:
        """Give an engine that keeps its own weights the policy's current ones."""
        if self.engine is not None and hasattr(self.engine, "sync_weights"):
            self.engine.sync_weights()

    # ----------------------------------------------------------------- data
    def batch_indices(self, step: int) -> list[int]:
        """This process's questions at a step: epoch-wise seeded permutations of the training set."""
        per_step = self.cfg.questions_per_step * self.accelerator.num_processes
        epoch, offset = divmod(step, self.steps_per_epoch)
        order = list(range(len(self.train_set)))
        random.Random(self.cfg.seed * 1_000_003 + epoch).shuffle(order)
        start = offset * per_step + self.accelerator.process_index * self.cfg.questions_per_step
        return order[start : start + self.cfg.questions_per_step]

    # ----------------------------------------------------------------- one step
    def step(self, step: int) -> dict:
        """One optimizer step of the algorithm on this step's questions; its metrics."""
        indices = self.batch_indices(step)
        batch = QuestionBatch(step, indices, [self.train_set[i] for i in indices], [self.prompts[i] for i in indices])
        return {"step": step + 1, "epoch": (step + 1) / self.steps_per_epoch, **self.algorithm.step(batch)}

    def skip_update(self) -> tuple[float, float]:
        """No group left to learn from on any process (CoVo's filter dropped them all): no update,
        as in CoVo's code. With no gradient set, AdamW leaves every weight and its moments as they
        are; the schedule still advances, so the lr stays a function of the step."""
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer.step()
        self.scheduler.step()
        return 0.0, lr

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        """One backward pass of the step (a micro-batch's share of the loss; `last`: the step's last
        share). Without DeepSpeed, accelerate's gradient accumulation exchanges gradients only after
        the last one. Under DeepSpeed its engine is told where the accumulation boundary lies: it
        reduces gradients and steps there (its own gradient_accumulation_steps stays 1, the shares
        already add up to the step's loss)."""
        if not self.deepspeed:
            with self.accelerator.accumulate(self.scorer):
                # accelerate divides each backward by the accumulation steps; undo it.
                self.accelerator.backward(loss * self.accelerator.gradient_accumulation_steps)
            return
        self.scorer.set_gradient_accumulation_boundary(last)
        self.scorer.backward(loss)
        if last:  # DeepSpeed's step: clip, AdamW unless the gradient norm is NaN/inf, schedule
            self.scorer.step()

    def update(self, loss) -> tuple[float, float]:
        """Backward, clip, one AdamW step, schedule; returns (grad norm, lr used).

        `loss`: the step's loss, or one function per micro-batch returning its share of the loss
        (with gradient; the shares add up to the loss), each called and back-propagated in turn
        under accelerate's gradient accumulation: the gradients add up, and are exchanged between
        processes (DeepSpeed steps its engine) only after the last one.
        A step whose loss or gradient norm is non-finite on any process is skipped: its gradients
        are dropped and the weights and AdamW moments stay as they were (`step_skipped`)."""
        shares = [lambda: loss] if torch.is_tensor(loss) else loss
        if len(shares) != self.micro_batches_per_step:  # the accumulation would end at the wrong call
            raise RuntimeError(f"{len(shares)} micro-batches in a step, expected {self.micro_batches_per_step}")
        lr = self.scheduler.get_last_lr()[0]
        total = 0.0
        for i, share in enumerate(shares):
            part = share()
            self.backward(part, last=i == len(shares) - 1)
            total = total + part.detach()
        grad_norm = self._deepspeed_stepped(total) if self.deepspeed else self._step(total)
        if not self.step_skipped:  # an engine with its own copy of the weights gets the new ones
            self.sync_engine()
        with warnings.catch_warnings():  # a skipped first step: "scheduler.step() before optimizer.step()"
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()  # (latro's own LambdaLR, also under DeepSpeed: accelerate keeps it)
        self.optimizer.zero_grad(set_to_none=True)
        return (math.nan if grad_norm is None else float(grad_norm)), lr

    def _step(self, loss: torch.Tensor):
        """Clip and step unless the loss or gradient norm is non-finite on some process; the norm."""
        # An infinite bound clips nothing but still measures the norm, which the check below needs.
        grad_norm = self.accelerator.clip_grad_norm_(self.scorer.parameters(), self.cfg.max_grad_norm or math.inf)
        self.step_skipped = not self.all_finite([loss.detach()] + ([] if grad_norm is None else [grad_norm]))
        if not self.step_skipped:
            self.optimizer.step()
            self._check_weights()
        return grad_norm

    def _check_weights(self) -> None:
        if not self.all_finite([p for group in self.optimizer.param_groups for p in group["params"]]):
            raise NonFiniteError(f"step {self.step_index + 1}: the update made weights NaN or infinite although "
                                 f"the loss and gradient norm were finite: lower --lr (nothing of this step was saved)")

    def _deepspeed_stepped(self, loss: torch.Tensor):
        """After DeepSpeed's engine stepped inside `backward`: whether it applied the step (it
        skips one whose gradient norm is NaN or infinite, as the loop does), and that the weights
        it wrote are finite. Returns the gradient norm (before clipping, as torch's clip returns)."""
        self.step_skipped = not self.agreed(bool(self.scorer.was_step_applied()) and bool(torch.isfinite(loss)))
        if not self.step_skipped:
            self._check_weights()
        return self.scorer.get_global_grad_norm()

    # ----------------------------------------------------------------- evaluation and checkpoints
    def validate(self, step: int) -> float:
        """Greedy validation accuracy; every process evaluates its share of the questions (in
        lockstep when the model is sharded) and takes part in saving a new best model."""
        cfg = self.cfg
        # An engine with its own weights (vLLM) generates for validation too: it holds the current ones.
        engine = self.engine.for_evaluation() if hasattr(self.engine, "for_evaluation") else None
        with self.generation_context():
            result = evaluate(self.policy, self.tokenizer, self.task, self.validation_set, samples=0,
                              max_new_tokens=cfg.eval_max_new_tokens, batch_size=cfg.eval_batch_size,
                              chat_template=cfg.chat_template, seed=cfg.seed, accelerator=self.accelerator,
                              synced=self.sharded, engine=engine)
        accuracy = result["metrics"]["greedy"]
        if self.accelerator.is_main_process:
            out = self.run_dir / "evaluations"
            out.mkdir(exist_ok=True)
            ckpt.write_text(out / f"validation-step-{step:06d}.json", ckpt.dumps({"step": step, **result}, indent=1))
        self.last_validation = {"step": step, "accuracy": accuracy, "questions": len(self.validation_set)}
        if accuracy > self.best_accuracy:
            # best.json names the evaluation that chose the model, and is what resume compares against.
            card = self._card({**self.last_validation, "note": "the best validation accuracy of the run"})
            self.save_policy(self.run_dir / "best-model",
                             extra={BEST_FILE: ckpt.dumps({"step": step, "validation_accuracy": accuracy}), **card})
            self.best_accuracy = accuracy
        return accuracy

    def save_policy(self, path: Path, extra: dict | None = None) -> None:
        """The policy in Hugging Face format, written once by the main process. Every process calls
        it: a sharded model's full weights are gathered from all of them first."""
        state = full_state_dict(self.accelerator, self.scorer) if self.sharded else None
        if self.accelerator.is_main_process:
            save_model(self.policy, self.tokenizer, path, self.cfg.merge_lora, extra=extra, state_dict=state)
        self.accelerator.wait_for_everyone()

    def _card(self, validation: dict | None) -> dict[str, str]:
        """The model card files of a model saved now (README.md and its source)."""
        cfg, algorithm = self.cfg, self.algorithm
        resolved = {"beta": getattr(algorithm, "beta", None), "kl_in": getattr(algorithm, "kl_in", None),
                    "estimator": cfg.estimator or parse_rewards(cfg.reward)[0][0].estimator}
        return card_files(run_info(dataclasses.asdict(cfg), self.label, validation, resolved))

    def _save_final_model(self) -> None:
        """model/ with its card (every process takes part), then the upload that --push-to-hub asks for."""
        cfg, final = self.cfg, self.run_dir / "model"
        self.save_policy(final, extra=self._card(self.last_validation))
        self.accelerator.print(f"model saved to {final}")
        if cfg.push_to_hub and self.accelerator.is_main_process:
            url = push_model(final, cfg.push_to_hub, cfg.hub_private, f"latro {self.label} on {cfg.task}: "
                             f"{self.step_index} steps from {cfg.model}")
            self.accelerator.print(f"model uploaded to {url}")

    def save_checkpoint(self, step: int) -> None:
        if not self.all_finite(self._checkpoint_tensors()):
            raise NonFiniteError(f"refusing to write the checkpoint of step {step}: the weights or optimizer "
                                 f"state hold NaN or infinite values")
        root = self.run_dir / "checkpoints"
        state = {"step": step, "best_accuracy": self.best_accuracy, "skipped_nonfinite": self.skipped_nonfinite,
                 "nonfinite_in_a_row": self.nonfinite_in_a_row}
        with ckpt.writing_checkpoint(root, step, state, self.accelerator.is_main_process) as tmp:
            self.accelerator.save_state(str(tmp))
            self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            ckpt.prune(root, self.cfg.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _checkpoint_tensors(self) -> list[torch.Tensor]:
        moments = [t for state in self.optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
        return [*self.scorer.parameters(), *moments]

    def maybe_resume(self) -> None:
        """Continues from the newest checkpoint that is complete, loads and is finite; damaged ones
        are set aside (`step-N.damaged`) and said so. metrics.jsonl is cut back to that step."""
        root = self.run_dir / "checkpoints"
        if self.accelerator.is_main_process:
            notes = [ckpt.restore_dir(self.run_dir / name) for name in ("model", "best-model")]
            notes += [f"removed the half-written checkpoint {name}" for name in ckpt.clean_half_written(root)]
            for note in filter(None, notes):
                self.accelerator.print(note)
        self.accelerator.wait_for_everyone()
        loaded_any = False
        for path in reversed(ckpt.checkpoints(root)):
            problem, loaded = self._load_checkpoint(path)
            loaded_any |= loaded
            if problem is None:
                self.accelerator.print(f"resumed from {path} at step {self.step_index}")
                break
            self.accelerator.print(f"checkpoint {path} is unusable ({problem}): set aside as {path.name}.damaged")
            if self.accelerator.is_main_process:
                ckpt.set_aside(path)
            self.accelerator.wait_for_everyone()
        else:
            if loaded_any:  # the weights may be half those of a damaged checkpoint: no fresh start from them
                raise ckpt.RunError(f"no checkpoint in {root} loads (each was set aside as .damaged); "
                                    f"run again with --resume to start over from {self.cfg.model}")
            self.accelerator.print(f"--resume: no checkpoint in {root}, starting fresh")
        self._read_best()
        if self.accelerator.is_main_process:
            self._cut_metrics()

    def _load_checkpoint(self, path) -> tuple[str | None, bool]:
        """(what is wrong with the checkpoint or None, whether loading it began), agreed by all processes."""
        try:
            state = ckpt.read_state(path)
        except ValueError as error:
            return str(error), False
        try:
            self.accelerator.load_state(str(path))
            problem = None if self.all_finite(self._checkpoint_tensors()) else "NaN or infinite weights"
        except Exception as error:  # noqa: BLE001 (whatever a damaged file raises, the checkpoint is unusable)
            problem = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
        if not self.agreed(problem is None):
            return problem or "it does not load on another process", True
        self.step_index, self.best_accuracy = state["step"], state.get("best_accuracy", -1.0)
        self.skipped_nonfinite = state.get("skipped_nonfinite", 0)
        self.nonfinite_in_a_row = state.get("nonfinite_in_a_row", 0)
        return None, True

    def _read_best(self) -> None:
        """best-model/ may be newer than the checkpoint (evaluated before a kill): compare against it."""
        best = self.run_dir / "best-model" / BEST_FILE
        try:
            self.best_accuracy = max(self.best_accuracy, float(json.loads(best.read_text())["validation_accuracy"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no best model yet, or one written by an older version

    def _cut_metrics(self) -> None:
        """Drops what was logged after the checkpoint, and lines cut by a kill or a full disk."""
        metrics = self.run_dir / "metrics.jsonl"
        if not metrics.exists():
            return
        records, unreadable = ckpt.read_lines(metrics)
        if unreadable:
            self.accelerator.print(f"{metrics}: dropped {unreadable} unreadable line(s), cut short by a kill or a "
                                   "full disk")
        kept = [r for r in records if isinstance(r, dict) and self.step_index and r.get("step", 0) <= self.step_index]
        ckpt.write_text(metrics, "".join(ckpt.dumps(r) + "\n" for r in kept))

    # ----------------------------------------------------------------- the run
    def _request_stop(self, signum, frame):
        if self._stop_signal:  # asked twice: stop now, losing only the step in flight
            raise RunStopped(signum, self.step_index, saved=False)
        self._stop_signal = signum
        self.accelerator.print("\nstop requested: finishing this step, then saving a checkpoint "
                               "(press Ctrl-C again to abandon it)")

    def agreed(self, ok: bool) -> bool:
        """Whether `ok` holds on every process (the same answer on all of them)."""
        if self.accelerator.num_processes == 1:
            return ok
        flag = torch.tensor(float(not ok), device=self.accelerator.device)
        return self.accelerator.reduce(flag, "sum").item() == 0

    def all_finite(self, tensors) -> bool:
        """Whether every tensor is finite on every process (each process checks its own shards)."""
        return self.agreed(nonfinite_tensors(local_tensors(tensors)) == 0)

    def _stop_signal_everywhere(self) -> int:
        """The stop signal any process received (all stop after the same step), else 0."""
        if self.accelerator.num_processes == 1:
            return self._stop_signal
        signum = torch.tensor(self._stop_signal, device=self.accelerator.device)
        return int(self.accelerator.reduce(signum, "max").item())

    def _count_skipped(self, metrics: dict) -> None:
        self.skipped_nonfinite += self.step_skipped
        self.nonfinite_in_a_row = self.nonfinite_in_a_row + 1 if self.step_skipped else 0
        metrics["skipped_nonfinite"] = self.skipped_nonfinite
        if self.step_skipped:
            self.accelerator.print(f"\nstep {self.step_index}: NaN or infinite loss or gradient norm: the step is "
                                   f"skipped ({self.nonfinite_in_a_row} in a row)")

    def _stop_if_diverged(self) -> None:
        limit, streak = self.cfg.max_nonfinite_steps, self.nonfinite_in_a_row
        if limit and streak >= limit:
            first = self.step_index - streak + 1
            raise NonFiniteError(
                f"steps {first}-{self.step_index}: {streak} steps in a row had a NaN or infinite loss or gradient "
                f"norm and were skipped, so the run stops (the weights are those after step {first - 1}; nothing "
                f"non-finite was applied or saved). Lower --lr or check the data; --max-nonfinite-steps sets the limit")

    def train(self) -> Path:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.resume:
            self.maybe_resume()
        elif held := ckpt.run_files(self.run_dir):
            raise FileExistsError(f"{self.run_dir} already holds a run ({', '.join(held)}): pass --resume "
                                  f"or another --output-dir")
        if not self.all_finite(list(self.scorer.parameters())):
            raise NonFiniteError(f"the weights of {cfg.model} hold NaN or infinite values: nothing to train")
        self.sync_engine()  # an engine with its own weights starts from these (the resumed ones on --resume)
        if self.accelerator.is_main_process:
            ckpt.replace_file(self.run_dir / "config.yaml", functools.partial(save_yaml, cfg))
            ckpt.write_text(self.run_dir / "prompt.txt", self.first_prompt or "")
        self.accelerator.init_trackers("latro", config={k: str(v) for k, v in vars(cfg).items()})
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(total=self.total_steps, initial=self.step_index, disable=not self.accelerator.is_main_process,
                   desc=self.label, dynamic_ncols=True)
        accuracy = None
        if cfg.eval_on_start and self.step_index == 0:
            accuracy = self.validate(0)
            self._log({"step": 0, "validation_accuracy": accuracy})
        self.accelerator.wait_for_everyone()
        try:
            while self.step_index < self.total_steps and not self._stop_signal_everywhere():
                metrics = self.step(self.step_index)
                self.step_index += 1
                self._count_skipped(metrics)
                last = self.step_index == self.total_steps
                due = last or (cfg.eval_every and self.step_index % cfg.eval_every == 0)
                if due:
                    accuracy = metrics["validation_accuracy"] = self.validate(self.step_index)
                self.accelerator.wait_for_everyone()
                self._log(metrics)
                shown = {"reward": metrics["reward_mean"]} if "reward_mean" in metrics else {"loss": metrics["loss"]}
                if "sample_accuracy" in metrics:  # the sampled answers' accuracy, when gold is known
                    shown["samples_right"] = metrics["sample_accuracy"]
                bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()},
                                acc="-" if accuracy is None else f"{accuracy:.3f}")
                bar.update(1)
                self._stop_if_diverged()
                if self.step_index % cfg.save_every == 0 or last:
                    self.save_checkpoint(self.step_index)
            stop = self._stop_signal_everywhere()
            if stop and self.step_index % cfg.save_every and self.step_index < self.total_steps:
                self.save_checkpoint(self.step_index)
            if self.step_index >= self.total_steps:
                self._save_final_model()
        finally:
            bar.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if hasattr(self.engine, "close"):  # an engine with its own resources (vLLM) releases them
                self.engine.close()
            self.accelerator.end_training()
        stop = stop or self._stop_signal  # one that came during the final save is reported too
        if stop:  # a non-zero exit (128 + signal), so that a scheduler requeues the run
            raise RunStopped(stop, self.step_index)
        return self.run_dir

    def _log(self, metrics: dict) -> None:
        if self.accelerator.is_main_process:
            ckpt.append_line(self.run_dir / "metrics.jsonl", ckpt.dumps(metrics))
        self.accelerator.log(metrics, step=metrics["step"])
