"""Run by tests/test_distributed.py under torchrun, 2 processes on CPU (gloo): torch's FSDP2
`fully_shard` over a tiny model wrapped as the training loop wraps it (decoder layers, then the
TokenScorer as root), then latro's lockstep sampler, lockstep evaluation and the gathered full
state dict, each compared with the same model unsharded. Prints OK on success."""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's latro; conftest's builders
from conftest import build_model, build_tokenizer  # noqa: E402

from latro.distributed import gathered_root  # noqa: E402
from latro.evaluate import evaluate  # noqa: E402
from latro.modeling import save_model  # noqa: E402
from latro.rollout import sample  # noqa: E402
from latro.scorer import TokenScorer  # noqa: E402
from latro.tasks.arithmetic import Arithmetic  # noqa: E402


def rollout_tokens(model, tokenizer, prompts, budget, synced):
    generator = torch.Generator().manual_seed(7)
    rollouts = sample(model, tokenizer, prompts, num_samples=2, max_new_tokens=budget, temperature=1.0,
                      stop_patterns=[], stop_token_ids=set(), generator=generator, synced=synced)
    return [r.completion_ids for r in rollouts]


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)  # the same weights on both processes (seeded)
    unsharded = copy.deepcopy(model)
    scorer = TokenScorer(model)  # the root, as under accelerate: embeddings, norm and head are its own
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(scorer)

    # Ranks finish at different lengths (3 vs 11 tokens) and hold different numbers of prompts.
    prompts = [tokenizer.encode("Tom has 3 apples")] if rank == 0 else \
        [tokenizer.encode("What is 12 + 7?"), tokenizer.encode("The answer is")]
    budget = 3 if rank == 0 else 11
    expected = rollout_tokens(unsharded, tokenizer, prompts, budget, synced=False)
    with gathered_root(scorer):
        got = rollout_tokens(model, tokenizer, prompts, budget, synced=True)
    assert got == expected, (rank, got, expected)
    assert {len(t) for t in got} == {budget}

    # Lockstep evaluation: 5 questions over 2 processes in batches of 2 (3 + 2 questions: the
    # second process runs a dummy batch to keep in step), equal to the unsharded records.
    from accelerate import PartialState

    state = PartialState(cpu=True)  # joins the process group torchrun started
    task = Arithmetic()
    questions = task.load("validation")[:5]
    kw = dict(samples=0, max_new_tokens=6, batch_size=2, chat_template=False)
    with gathered_root(scorer):
        sharded = evaluate(model, tokenizer, task, questions, accelerator=state, synced=True, **kw)
    alone = evaluate(unsharded, tokenizer, task, questions, **kw)
    assert sharded["records"] == alone["records"], (sharded["records"], alone["records"])

    # The collective full state dict equals the unsharded weights, and saving it writes them.
    full = get_model_state_dict(scorer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    full = {name.removeprefix("model."): tensor for name, tensor in full.items()}
    if rank == 0:
        for name, tensor in unsharded.state_dict().items():
            assert torch.equal(full[name], tensor), name
        with tempfile.TemporaryDirectory() as out:
            save_model(model, tokenizer, Path(out) / "model", state_dict=full)
            from transformers import AutoModelForCausalLM

            saved = AutoModelForCausalLM.from_pretrained(Path(out) / "model").state_dict()
        for name, tensor in unsharded.state_dict().items():
            assert torch.equal(saved[name], tensor), name
    dist.barrier()
    dist.destroy_process_group()
    print(f"rank {rank} OK", flush=True)


if __name__ == "__main__":
    main()
