"""The training loop, apart from any algorithm: accelerate set-up, data order, validation,
checkpoints, signals, logging and progress. Each step it calls `algorithm.step(batch) -> metrics`
(latro/algorithms/); the algorithm updates the weights through `update`.

    latro train --model HuggingFaceTB/SmolLM2-135M-Instruct --task gsm8k --num-samples 4
    accelerate launch -m latro.cli train --config run.yaml      # DDP / DeepSpeed / FSDP
"""

from __future__ import annotations

import json
import math
import random
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from latro.config import TrainConfig, check_resume, save_yaml
from latro.errors import UserError
from latro.evaluate import evaluate
from latro.modeling import add_lora, context_length, frozen_copy, load_model, load_tokenizer, save_model
from latro.prompts import encode_prompt, end_of_turn_id, stop_token_ids
from latro.scorer import TokenScorer
from latro.tasks import Example, Task, task_from_config


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


class TrainingLoop:
    def __init__(self, cfg: TrainConfig, algorithm, task: Task | None = None):
        """`algorithm`: a class of latro.algorithms (e.g. LaTRO, SFT), built here with the task;
        `task`: in place of the one `cfg.task` names (in-memory data from the Python API)."""
        if not cfg.model:
            raise UserError("no model given: pass --model (hub id, directory or .gguf file)")
        self.cfg = cfg
        self.run_dir = Path(cfg.output_dir)
        trackers = [t for t in cfg.report_to.split(",") if t and t != "none"]
        self.acc = Accelerator(log_with=trackers or None, project_dir=str(self.run_dir),
                               mixed_precision=mixed_precision(cfg))
        if cfg.resume:  # before anything is loaded or written
            check_resume(cfg, self.run_dir / "config.yaml", self.acc.print)
        set_seed(cfg.seed)
        self.task = task or task_from_config(cfg)
        self.algorithm = algorithm(cfg, self.task, self.acc)
        self.label = self.algorithm.label
        self.tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, cfg.trust_remote_code)
        model = load_model(cfg.model, cfg.dtype if cfg.pure_dtype else "float32", cfg.trust_remote_code)
        self._load_data(context_length(model))
        self._build_model(model)
        self.algorithm.bind(self)
        self.step_index, self.best_accuracy = 0, -1.0
        self._stop_requested = False

    @property
    def accelerator(self) -> Accelerator:
        return self.acc

    # ----------------------------------------------------------------- setup
    def _load_data(self, context: int):
        cfg = self.cfg
        self.train_set = self.algorithm.select_training(self.task.load("train"))
        if cfg.train_limit:
            self.train_set = self.train_set[: cfg.train_limit]
        self.validation_set = self.task.load("validation")
        if cfg.eval_limit:
            self.validation_set = self.validation_set[: cfg.eval_limit]
        self.prompts = [encode_prompt(self.tokenizer, self.task, ex, cfg.chat_template) for ex in self.train_set]
        budget = cfg.max_rationale_tokens + max(32, cfg.answer_tokens)  # room for the answer
        fits = [i for i, p in enumerate(self.prompts) if len(p) + budget <= context]
        self.skipped_long = len(self.train_set) - len(fits)
        if self.skipped_long:
            self.acc.print(f"skipping {self.skipped_long} training questions whose prompt + "
                           f"{budget} tokens exceeds the {context}-token context")
            self.train_set = [self.train_set[i] for i in fits]
            self.prompts = [self.prompts[i] for i in fits]
        per_step = cfg.questions_per_step * self.acc.num_processes
        if len(self.train_set) < per_step:
            raise UserError(f"{len(self.train_set)} training questions, fewer than one step's {per_step} "
                            "(--questions-per-step on each process)")
        self.steps_per_epoch = len(self.train_set) // per_step
        self.total_steps = cfg.max_steps or max(1, math.floor(cfg.epochs * self.steps_per_epoch))

    def _build_model(self, model):
        cfg = self.cfg
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        self.ref = None
        if cfg.lora_r > 0:
            model = add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        elif self.algorithm.needs_reference:
            self.ref = frozen_copy(model).to(self.acc.device)
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.pure_dtype:
            warn_if_updates_round_away(params, cfg.lr, self.acc.print)
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
        self.scorer, self.optimizer, self.scheduler = self.acc.prepare(scorer, optimizer, scheduler)
        self.ref_scorer = TokenScorer(self.ref, cfg.score_chunk_size) if self.ref is not None else None
        self.stop_ids = stop_token_ids(self.tokenizer, model)
        self.end_id = end_of_turn_id(self.tokenizer, cfg.chat_template)  # closes the forced answer

    @property
    def policy(self):
        return self.acc.unwrap_model(self.scorer).model

    # ----------------------------------------------------------------- data
    def batch_indices(self, step: int) -> list[int]:
        """This process's questions at a step: epoch-wise seeded permutations of the training set."""
        per_step = self.cfg.questions_per_step * self.acc.num_processes
        epoch, offset = divmod(step, self.steps_per_epoch)
        order = list(range(len(self.train_set)))
        random.Random(self.cfg.seed * 1_000_003 + epoch).shuffle(order)
        start = offset * per_step + self.acc.process_index * self.cfg.questions_per_step
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

    def update(self, loss: torch.Tensor) -> tuple[float, float]:
        """Backward, clip, one AdamW step, schedule; returns (grad norm, lr used)."""
        self.acc.backward(loss)
        grad_norm = self.acc.clip_grad_norm_(self.scorer.parameters(), self.cfg.max_grad_norm) \
            if self.cfg.max_grad_norm > 0 else torch.tensor(float("nan"))
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm), lr

    # ----------------------------------------------------------------- evaluation and checkpoints
    def validate(self, step: int) -> float:
        cfg = self.cfg
        with self.acc.autocast():
            result = evaluate(self.policy, self.tokenizer, self.task, self.validation_set, samples=0,
                              max_new_tokens=cfg.eval_max_new_tokens, batch_size=cfg.eval_batch_size,
                              chat_template=cfg.chat_template, seed=cfg.seed)
        accuracy = result["metrics"]["greedy"]
        out = self.run_dir / "evaluations"
        out.mkdir(exist_ok=True)
        (out / f"validation-step-{step:06d}.json").write_text(json.dumps({"step": step, **result}, indent=1))
        if accuracy > self.best_accuracy:
            self.best_accuracy = accuracy
            save_model(self.policy, self.tokenizer, self.run_dir / "best-model", cfg.merge_lora)
        return accuracy

    def save_checkpoint(self, step: int) -> None:
        ckpt_root = self.run_dir / "checkpoints"
        path = ckpt_root / f"step-{step:06d}"
        self.acc.save_state(str(path))
        if self.acc.is_main_process:
            # Written last: a checkpoint without it is incomplete and ignored on resume.
            (path / "trainer_state.json").write_text(json.dumps(
                {"step": step, "best_accuracy": self.best_accuracy}))
            done = sorted(p for p in ckpt_root.glob("step-*") if (p / "trainer_state.json").exists())
            for old in done[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()

    def maybe_resume(self) -> None:
        done = sorted(p for p in (self.run_dir / "checkpoints").glob("step-*") if (p / "trainer_state.json").exists())
        if done:
            self.acc.load_state(str(done[-1]))
            state = json.loads((done[-1] / "trainer_state.json").read_text())
            self.step_index, self.best_accuracy = state["step"], state["best_accuracy"]
            self.acc.print(f"resumed from {done[-1]} at step {self.step_index}")
        else:
            self.acc.print(f"--resume: no checkpoint in {self.run_dir / 'checkpoints'}, starting fresh")
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.exists() and self.acc.is_main_process:  # drop what was logged after the checkpoint
            kept = [line for line in metrics.read_text().splitlines()
                    if line and self.step_index and json.loads(line).get("step", 0) <= self.step_index]
            metrics.write_text("".join(line + "\n" for line in kept))

    # ----------------------------------------------------------------- the run
    def _request_stop(self, signum, frame):
        if self._stop_requested:  # asked twice: stop now, losing only the step in flight
            raise KeyboardInterrupt
        self._stop_requested = True
        self.acc.print("\nstop requested: finishing this step, then saving a checkpoint "
                       "(press Ctrl-C again to abandon it)")

    def train(self) -> Path:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.resume:
            self.maybe_resume()
        elif (self.run_dir / "checkpoints").exists():
            raise FileExistsError(f"{self.run_dir} already holds a run: pass --resume or another --output-dir")
        if self.acc.is_main_process:
            save_yaml(cfg, self.run_dir / "config.yaml")
        self.acc.init_trackers("latro", config={k: str(v) for k, v in vars(cfg).items()})
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(total=self.total_steps, initial=self.step_index, disable=not self.acc.is_main_process,
                   desc=self.label, dynamic_ncols=True)
        accuracy = None
        if cfg.eval_on_start and self.step_index == 0 and self.acc.is_main_process:
            accuracy = self.validate(0)
            self._log({"step": 0, "validation_accuracy": accuracy})
        self.acc.wait_for_everyone()
        try:
            while self.step_index < self.total_steps and not self._stop_requested:
                metrics = self.step(self.step_index)
                self.step_index += 1
                last = self.step_index == self.total_steps
                due = last or (cfg.eval_every and self.step_index % cfg.eval_every == 0)
                if self.acc.is_main_process and due:
                    accuracy = metrics["validation_accuracy"] = self.validate(self.step_index)
                self.acc.wait_for_everyone()
                self._log(metrics)
                shown = {"reward": metrics["reward_mean"]} if "reward_mean" in metrics else {"loss": metrics["loss"]}
                if "sample_accuracy" in metrics:  # the sampled answers' accuracy, when gold is known
                    shown["samples_right"] = metrics["sample_accuracy"]
                bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()},
                                acc="-" if accuracy is None else f"{accuracy:.3f}")
                bar.update(1)
                if self.step_index % cfg.save_every == 0 or last:
                    self.save_checkpoint(self.step_index)
            if self._stop_requested and self.step_index % cfg.save_every:
                self.save_checkpoint(self.step_index)
        finally:
            bar.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.acc.end_training()
        if self.step_index >= self.total_steps and self.acc.is_main_process:
            save_model(self.policy, self.tokenizer, self.run_dir / "model", cfg.merge_lora)
            self.acc.print(f"model saved to {self.run_dir / 'model'}")
        return self.run_dir

    def _log(self, metrics: dict) -> None:
        if self.acc.is_main_process:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
        self.acc.log(metrics, step=metrics["step"])
