"""The LaTRO step (arXiv 2411.04282, Prop. 2) with any registered reward: rollout -> score ->
reward -> advantages -> one optimizer step. The record passed between stages is `Trajectories`.

One step, top to bottom (`LaTRO.step`):
  1. sample K rationales for each question of the batch, cut at the first stop pattern (and,
     with `answer_tokens`, read the model's own answer that follows it);
  2. one teacher-forced pass of the policy gives log pi(sampled tokens | x) with gradient and,
     for LaTRO, log pi(y|x+z) of the gold answer after the rationale; one no-grad pass of pi_0
     gives the reference log-probs. With latro the sampled tokens are the rationale z (the
     paper); with own-answer rewards only, the whole response (as GRPO, TTRL, Intuitor, CoVo);
  3. reward minus beta x KL (when the KL is in the reward), non-stop penalty on LaTRO's part,
     advantages from the estimator (with CoVo, groups without any reward dropped first);
  4. backward of the Prop. 2 surrogate (plus beta x the per-token KL when it is in the loss),
     clip, AdamW step, linear decay (the loop's `update`).
With --micro-batch-size, step 2's policy pass is made without gradient (the rewards and the
advantages need every rollout first), and step 4 takes a pass with gradient per micro-batch,
back-propagating its share of the loss: one extra forward pass for the memory of a micro-batch.
Deliberately not done: PPO-style ratio clipping and multiple updates per batch (the paper takes
one on-policy step per batch of rollouts).
"""

from __future__ import annotations

import functools
import time

import torch

from latro.algorithms import register_algorithm
from latro.distributed import reduce_metrics
from latro.errors import UserError
from latro.estimators import batch_whiten, get_estimator
from latro.modeling import reference_of
from latro.monitor import reward_diagnostics
from latro.objective import k3_kl, latro_objective, loss_weights, rollout_objective
from latro.prompts import answer_ids
from latro.rewards import RewardContext, combined, parse_rewards
from latro.rewards.covo import groups_with_signal
from latro.scorer import Batch, TokenScorer, make_batch, micro_batches, score_in_parts, sequence_logprobs
from latro.trajectories import Trajectories


@register_algorithm("latro")
class LaTRO:
    label = "latro"

    def __init__(self, cfg, task, accelerator):
        self.cfg, self.task, self.accelerator = cfg, task, accelerator
        self.rewards = parse_rewards(cfg.reward)
        first = self.rewards[0][0]
        self.forces_gold = any(r.forces_gold for r, _ in self.rewards)
        self.needs_certainty = any(r.certainty for r, _ in self.rewards)
        self.beta = cfg.beta if cfg.beta is not None else first.beta if first.beta is not None else task.paper_beta
        estimator = cfg.estimator or first.estimator
        self.estimator = get_estimator(estimator)
        if self.estimator is batch_whiten and accelerator.num_processes > 1:
            self.estimator = functools.partial(batch_whiten, gather=accelerator.gather)
        self.kl_in = cfg.kl_in or ("loss" if estimator == "group_norm" else "reward")
        names = {r.name for r, _ in self.rewards}
        self.covo_filter = cfg.covo_filter and "covo" in names and estimator == "batch_whiten"
        self.samples_drawn = self._samples_per_question(names)
        self.last_trajectories: Trajectories | None = None  # the last step's record (inspection, bench)

    @property
    def needs_reference(self) -> bool:
        return self.beta > 0

    @staticmethod
    def sequences_per_step(cfg) -> int:
        """Sequences scored and back-propagated per step on each process: K per question."""
        return cfg.questions_per_step * cfg.num_samples

    def _samples_per_question(self, reward_names: set[str]) -> int:
        """K, or M > K with majority voters (only the first K of each question are trained on)."""
        cfg = self.cfg
        if cfg.majority_voters and cfg.majority_voters < cfg.num_samples:
            raise ValueError(f"--majority-voters {cfg.majority_voters} is below --num-samples {cfg.num_samples}: "
                             "the K trained responses always vote (0 = only them)")
        if cfg.majority_voters > cfg.num_samples and "majority" not in reward_names:
            raise ValueError(f"--majority-voters {cfg.majority_voters} only serves --reward majority")
        return max(cfg.num_samples, cfg.majority_voters)

    def select_training(self, examples):
        return examples  # every question with a gold answer

    def bind(self, run) -> None:
        """Attach the loop: its policy scorer, reference, tokenizer and update."""
        self.run = run
        if run.sharded and "covo" in {r.name for r, _ in self.rewards}:  # its branch passes are not in lockstep
            raise UserError("--reward covo is not supported with a sharded model (DeepSpeed ZeRO-3, FSDP)")
        self.engine = run.make_engine()  # --rollout-engine

    # ----------------------------------------------------------------- one step
    def step(self, batch) -> dict:
        cfg, run, device = self.cfg, self.run, self.accelerator.device
        examples = [ex for ex in batch.examples for _ in range(cfg.num_samples)]
        generator = torch.Generator(device=device).manual_seed(
            cfg.seed * 1_000_003 + batch.step * 97 + self.accelerator.process_index)

        t0 = time.perf_counter()
        run.policy.eval()
        drawn = self.engine.generate(batch.prompts, num_samples=self.samples_drawn,
                                     max_new_tokens=cfg.max_rationale_tokens, temperature=cfg.temperature,
                                     generator=generator, answer_tokens=cfg.answer_tokens)
        rollouts, voting_only = self.split_voters(drawn)
        t1 = time.perf_counter()

        trajectories = self.pack(rollouts, examples, voting_only)
        micro = micro_batches(len(rollouts), cfg.micro_batch_size)
        self.score(trajectories, micro)
        reward, parts = self.score_rewards(trajectories, examples)
        # The non-stop penalty scales LaTRO's negative log-likelihoods; own-answer rewards already
        # give an unfinished response no answer and so no credit.
        penalised, extra = self.penalty_split(reward, parts)
        keep = groups_with_signal(parts["covo"].to(device), cfg.num_samples) if self.covo_filter else None
        kl_loss = k3_kl(trajectories.token_logprobs, trajectories.ref_token_logprobs, trajectories.segments) \
            if trajectories.ref_token_logprobs is not None and self.kl_in == "loss" else None
        objective = latro_objective(
            rationale_logp=trajectories.sampled_logprob, answer_logp=trajectories.forced_logprob,
            ref_rationale_logp=trajectories.ref_sampled_logprob, reward=penalised,
            stopped=trajectories.stopped | (not self.forces_gold), group_size=cfg.num_samples, beta=self.beta,
            gamma=cfg.nonstop_gamma, answer_weight=cfg.answer_weight, estimator=self.estimator,
            extra_reward=extra, kl_in=self.kl_in, kl_loss=kl_loss, keep=keep)
        trajectories.rewards, trajectories.advantages, trajectories.keep = objective.rewards, objective.advantages, keep
        t2 = time.perf_counter()
        self.last_trajectories = trajectories

        if keep is not None and not self.accelerator.gather(keep.sum().reshape(1)).sum():
            grad_norm, lr = run.skip_update()
        elif len(micro) == 1:
            grad_norm, lr = run.update(objective.loss)
        else:
            grad_norm, lr = run.update([functools.partial(self.micro_batch_loss, trajectories, objective, part)
                                        for part in micro])
        t3 = time.perf_counter()
        return self.metrics(trajectories, objective, kl_loss, drawn, examples, grad_norm, lr, (t0, t1, t2, t3))

    def metrics(self, trajectories, objective, kl_loss, drawn, examples, grad_norm, lr, times) -> dict:
        cfg, parts, keep = self.cfg, trajectories.reward_parts, trajectories.keep
        t0, t1, t2, t3 = times
        num_sampled = sum(r.num_sampled for r in drawn)
        lengths = torch.tensor([len(r.rationale_ids) for r in trajectories.rollouts], dtype=torch.float)
        diagnostics = reward_diagnostics(self.task, examples, trajectories.reward_sum.tolist(),
                                         trajectories.own_answers, cfg.num_samples) if cfg.answer_tokens else {}
        return reduce_metrics({
            "reward_mean": objective.rewards.mean().item(), "reward_std": objective.rewards.std().item(),
            **({f"reward/{name}": v.mean().item() for name, v in parts.items()} if len(parts) > 1 else {}),
            **diagnostics,
            "kl": objective.kl.mean().item(), "answer_logp": trajectories.forced_logprob.detach().mean().item(),
            **({"kl_k3": kl_loss.detach().mean().item()} if kl_loss is not None else {}),
            **({"dropped_groups": int((~keep).sum()) // cfg.num_samples} if keep is not None else {}),
            "rationale_tokens": lengths.mean().item(),
            "stopped_fraction": trajectories.stopped.float().mean().item(),
            "loss": objective.loss.item(), "grad_norm": float(grad_norm), "lr": lr,
            "time_generate": t1 - t0, "time_score": t2 - t1, "time_update": t3 - t2,
            "rollout_tokens_per_s": num_sampled / max(t1 - t0, 1e-9), "sampled_tokens": num_sampled,
        }, len(trajectories.rollouts), self.accelerator)  # means over every process's samples

    def split_voters(self, drawn):
        """(the first K rollouts of each question, trained on; per question the others, drawn only
        to vote on the majority answer)."""
        k, m = self.cfg.num_samples, self.samples_drawn
        trained = [r for j, r in enumerate(drawn) if j % m < k]
        return trained, [drawn[start + k : start + m] for start in range(0, len(drawn), m)]

    def penalty_split(self, reward, parts):
        """(the reward the non-stop penalty applies to, the rest of a combined reward or None). The
        paper defines the penalty on LaTRO's reward: gamma x a negative batch mean. Applied to a
        sum with a positive reward it could turn into a bonus, so the other parts come after it."""
        if not self.forces_gold or len(self.rewards) == 1:
            return reward, None
        part = lambda gold: sum(w * parts[r.name] for r, w in self.rewards if r.forces_gold == gold)
        return part(True).to(reward.device), part(False).to(reward.device)

    def pack(self, rollouts, examples, voting_only) -> Trajectories:
        """The record of the step: with latro the rationale is sampled and the gold answer
        teacher-forced after it (the paper); with own-answer rewards only, the whole response."""
        tok, k = self.run.tokenizer, self.cfg.num_samples
        if self.forces_gold:
            sampled = [r.rationale_ids for r in rollouts]
            forced = [answer_ids(tok, self.task, ex, r, self.run.end_id) for ex, r in zip(examples, rollouts)]
        else:
            sampled, forced = [r.completion_ids for r in rollouts], [[] for _ in rollouts]
        answers = [self.own_answer(r, ex) for r, ex in zip(rollouts, examples)]
        voters = None
        if voting_only and any(voting_only):
            voters = [answers[q * k : (q + 1) * k] + [self.own_answer(r, examples[q * k]) for r in extra]
                      for q, extra in enumerate(voting_only)]
        packed = make_batch([r.prompt_ids for r in rollouts], sampled, forced, tok.pad_token_id).to(
            self.accelerator.device)
        stopped = torch.tensor([r.stopped for r in rollouts], device=self.accelerator.device)
        return Trajectories(rollouts=rollouts, sampled_ids=sampled, forced_ids=forced, stopped=stopped,
                            own_answers=answers, voter_answers=voters, input_ids=packed.input_ids,
                            attention_mask=packed.attention_mask, segments=packed.segments)

    def score(self, t: Trajectories, parts: list[slice]) -> None:
        """The reference's log-probs (no grad, when beta > 0), then the policy's: with grad in one
        pass, or without grad when several micro-batches (`parts`) take the gradient later."""
        run, batch = self.run, Batch(t.input_ids, t.attention_mask, t.segments)
        run.policy.train()  # gradient checkpointing (if on) only acts in train mode
        if self.beta > 0:
            with torch.no_grad(), self.accelerator.autocast(), reference_of(run.policy, run.ref) as ref:
                scorer = run.ref_scorer or TokenScorer(ref, self.cfg.score_chunk_size)
                scored = sequence_logprobs(score_in_parts(scorer, batch, parts), t.segments)
            t.ref_token_logprobs, t.ref_sampled_logprob = scored.token_logprobs, scored.rationale
        with torch.set_grad_enabled(len(parts) == 1):
            scored = sequence_logprobs(score_in_parts(run.scorer, batch, parts, self.needs_certainty), t.segments)
        t.token_logprobs, t.sampled_logprob, t.forced_logprob = scored.token_logprobs, scored.rationale, scored.answer
        t.certainty = scored.certainty

    def micro_batch_loss(self, t: Trajectories, objective, part: slice) -> torch.Tensor:
        """The share of the step's loss of the rollouts in `part`, with gradient: their terms of
        the surrogate under the step's advantages and loss weights, so that the shares add up to
        `objective.loss` (and their gradients to its gradient)."""
        batch = Batch(t.input_ids, t.attention_mask, t.segments)
        piece = batch.rows(part)
        scored = sequence_logprobs(self.run.scorer(piece.input_ids, piece.attention_mask, piece.segments),
                                   piece.segments)
        kl_loss = None
        if self.kl_in == "loss" and t.ref_token_logprobs is not None:
            kl_loss = k3_kl(scored.token_logprobs, t.ref_token_logprobs[batch.token_span(part)], piece.segments)
        terms = rollout_objective(objective.advantages[part], scored.rationale, scored.answer,
                                  self.cfg.answer_weight, self.beta, kl_loss)
        return -(terms * loss_weights(t.keep, len(t.rollouts), terms)[part]).sum()

    def score_rewards(self, t: Trajectories, examples) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the combined reward, each reward's part), also kept in the record."""
        contexts = {r.name: RewardContext(task=self.task, examples=examples, group_size=self.cfg.num_samples,
                                          model=self.run.policy, tokenizer=self.run.tokenizer,
                                          options=r.options_from(self.cfg)) for r, _ in self.rewards}
        with torch.no_grad():
            reward, parts = combined(self.rewards, t, contexts)
        t.reward_parts = parts
        t.reward_sum = reward
        return reward.to(self.accelerator.device), parts

    def own_answer(self, rollout, example):
        # Read only after a stop pattern: without one, the parser's last-number fallback would
        # take a number from the middle of an unfinished rationale as the answer.
        return self.task.parse_answer(rollout.completion, example) if self.cfg.answer_tokens and rollout.stopped \
            else None
