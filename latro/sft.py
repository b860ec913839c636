"""Supervised fine-tuning on gold rationales: the paper's SFT baseline, on the LaTRO trainer's path.

    latro sft --model path/to/model --task gsm8k --data-dir ../shared/data/gsm8k --questions-per-step 8

Each training question contributes prompt + gold rationale + `The answer is {gold}.` + end of
turn; the loss is the mean negative log-likelihood of the rationale and answer tokens. Data
order, checkpoints, resume, validation, best-model selection and the run directory are those
of `latro train`, so an SFT run and a LaTRO run with the same steps and questions per step
compare like for like. Questions without a gold rationale are skipped and counted.
"""

from __future__ import annotations

import time

from latro.errors import UserError
from latro.prompts import sft_target_ids
from latro.scorer import RATIONALE, make_batch
from latro.trainer import Trainer


class SFTTrainer(Trainer):
    uses_reference = False
    label = "sft"

    def select_training(self, examples):
        kept = [ex for ex in examples if ex.rationale]
        self.skipped_no_rationale = len(examples) - len(kept)
        if not kept:
            raise UserError(f"task {self.cfg.task!r} has no gold rationales in its train split: nothing to fine-tune on")
        if self.skipped_no_rationale:
            self.acc.print(f"skipping {self.skipped_no_rationale} training questions without a gold rationale")
        return kept

    def step(self, step: int) -> dict:
        indices = self.batch_indices(step)
        t0 = time.perf_counter()
        prompts, rationales, answers = [], [], []
        for i in indices:
            rationale, answer = sft_target_ids(self.tokenizer, self.task, self.train_set[i], self.prompts[i],
                                               self.end_id)
            prompts.append(self.prompts[i])
            rationales.append(rationale)
            answers.append(answer)
        batch = make_batch(prompts, rationales, answers, self.tokenizer.pad_token_id).to(self.acc.device)
        self.policy.train()
        token_logp = self.scorer(batch.input_ids, batch.attention_mask, batch.segments)
        loss = -token_logp.mean()
        grad_norm, lr = self.update(loss)
        scored = batch.segments[:, 1:]
        return {
            "step": step + 1, "epoch": (step + 1) / self.steps_per_epoch, "loss": loss.item(),
            "rationale_tokens": (scored == RATIONALE).sum().item() / len(indices),
            "grad_norm": grad_norm, "lr": lr, "time_update": time.perf_counter() - t0,
        }
