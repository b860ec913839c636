"""Supervised fine-tuning on gold rationales: the paper's SFT baseline, in the same loop as LaTRO.

    latro sft --model path/to/model --task gsm8k --data-dir ../shared/data/gsm8k --questions-per-step 8

Each training question contributes prompt + gold rationale + `The answer is {gold}.` + end of
turn; the loss is the mean negative log-likelihood of the rationale and answer tokens. Data
order, checkpoints, resume, validation, best-model selection and the run directory are those
of `latro train`, so an SFT run and a LaTRO run with the same steps and questions per step
compare like for like. Questions without a gold rationale are skipped and counted. It samples
nothing and needs no reward, estimator or reference model.
"""

from __future__ import annotations

import functools
import time

from latro.algorithms import register_algorithm
from latro.errors import UserError
from latro.prompts import sft_target_ids
from latro.scorer import make_batch, micro_batches
from latro.trajectories import SAMPLED


@register_algorithm("sft")
class SFT:
    label = "sft"
    needs_reference = False

    def __init__(self, cfg, task, accelerator):
        self.cfg, self.task, self.accelerator = cfg, task, accelerator
        self.skipped_no_rationale = 0

    def select_training(self, examples):
        kept = [ex for ex in examples if ex.rationale]
        self.skipped_no_rationale = len(examples) - len(kept)
        if not kept:
            raise UserError(f"task {self.cfg.task!r} has no gold rationales in its train split: "
                            "nothing to fine-tune on")
        if self.skipped_no_rationale:
            self.accelerator.print(f"skipping {self.skipped_no_rationale} training questions without a gold rationale")
        return kept

    @staticmethod
    def sequences_per_step(cfg) -> int:
        """Sequences back-propagated per step on each process: one per question."""
        return cfg.questions_per_step

    def bind(self, run) -> None:
        self.run = run

    def step(self, batch) -> dict:
        run, tok = self.run, self.run.tokenizer
        t0 = time.perf_counter()
        targets = [sft_target_ids(tok, self.task, ex, prompt, run.end_id)
                   for ex, prompt in zip(batch.examples, batch.prompts)]
        packed = make_batch(batch.prompts, [r for r, _ in targets], [a for _, a in targets],
                            tok.pad_token_id).to(self.accelerator.device)
        run.policy.train()
        scored = packed.segments[:, 1:]
        tokens = int((scored != 0).sum())
        shares = []  # each micro-batch's share of the loss, the mean over all the step's tokens

        def share(part):
            piece = packed.rows(part)
            loss = -run.scorer(piece.input_ids, piece.attention_mask, piece.segments).sum() / tokens
            shares.append(loss.detach())
            return loss

        parts = micro_batches(len(batch.examples), self.cfg.micro_batch_size)
        grad_norm, lr = run.update([functools.partial(share, part) for part in parts])
        return {
            "loss": sum(s.item() for s in shares),
            "rationale_tokens": (scored == SAMPLED).sum().item() / len(batch.examples),
            "grad_norm": grad_norm, "lr": lr, "time_update": time.perf_counter() - t0,
        }
