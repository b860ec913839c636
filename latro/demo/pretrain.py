"""Pre-train the demonstration model: a small Llama that is a *hidden reasoner* on `arithmetic`.

    python -m latro.demo.pretrain                      # rewrites latro/demo/model (~20 min, 2 cores)
    python -m latro.demo.pretrain --out /tmp/m --steps 200

The corpus is made of problems disjoint from the task's train, validation and test splits, and
arithmetic worksheets. Each problem document is a prompt followed either by the gold steps and
answer (a minority) or by "I can do this in my head." and an answer that is often wrong (most).
The model thus learns both to reason step by step and to guess; greedy decoding picks the more
frequent habit, guessing, so its greedy accuracy is low while samples that write the steps are
mostly right. That latent ability is what LaTRO is meant to surface,
from question + answer pairs only.

Deterministic: fixed seeds, one thread count, no data-order randomness beyond the seed.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from latro.tasks.arithmetic import Arithmetic, generate

MODEL_DIR = Path(__file__).parent / "model"
EOS, PAD = "<|endoftext|>", "<|pad|>"


HEAD_MATH = "I can do this in my head."


def documents(problems, task, with_steps: float, guess_right: float, seed: int) -> list[str]:
    """Prompt + rationale + answer + EOS. A share `with_steps` of the problems shows the gold steps
    and the gold answer; the others claim to need no steps and give an answer that is right only
    a share `guess_right` of the time (else off by 1 to 10): the corpus of a model that often
    skips the work and then botches the answer."""
    rng, docs = random.Random(seed), []
    for ex in problems:
        if rng.random() < with_steps:
            body, answer = ex.rationale, ex.answer
        else:
            body, answer = HEAD_MATH, ex.answer
            if rng.random() >= guess_right:
                answer = str(max(0, int(ex.answer) + rng.choice([-1, 1]) * rng.randint(1, 10)))
        docs.append(f"{task.prompt(ex)}\n{body}\nThe answer is {answer}.{EOS}")
    return docs


def drills(count: int, seed: int, per_doc: int = 8, max_value: int = 99, max_operand: int = 20) -> list[str]:
    """Worksheets of single equations, as a pre-training corpus has: arithmetic without the
    habit of writing it out when asked a question."""
    rng, docs = random.Random(seed), []
    for _ in range(count):
        lines = []
        while len(lines) < per_doc:
            a, kind = rng.randint(0, max_value), rng.choice("+-*/")
            if kind == "+" and a < max_value:
                b = rng.randint(1, min(max_operand, max_value - a))
                lines.append(f"{a} + {b} = {a + b}")
            elif kind == "-" and a > 0:
                b = rng.randint(1, min(max_operand, a))
                lines.append(f"{a} - {b} = {a - b}")
            elif kind == "*" and 0 < a * (b := rng.choice((2, 3))) <= max_value:
                lines.append(f"{a} * {b} = {a * b}")
            elif kind == "/" and a >= 2 and a % 2 == 0:
                lines.append(f"{a} / 2 = {a // 2}")
        docs.append("\n".join(lines) + EOS)
    return docs


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, bos_token=EOS,
                                   model_max_length=512)


def build_model(tokenizer, hidden: int, layers: int, heads: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(MODEL_DIR), help="Where to write the model.")
    parser.add_argument("--problems", type=int, default=40000, help="Pre-training problems.")
    parser.add_argument("--with-steps", type=float, default=0.35, help="Share of problems shown with gold steps.")
    parser.add_argument("--guess-right", type=float, default=0.5,
                        help="Share of the answers given without steps that are right.")
    parser.add_argument("--drills", type=int, default=20000, help="Arithmetic worksheet documents.")
    parser.add_argument("--steps", type=int, default=1700, help="Optimizer steps.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    task = Arithmetic()
    pool = generate(task.level, {**task.sizes, "pretrain": args.problems}, task.seed)["pretrain"]
    docs = documents(pool, task, args.with_steps, args.guess_right, args.seed) + drills(args.drills, args.seed + 1)
    tokenizer = train_tokenizer(docs, args.vocab_size)
    model = build_model(tokenizer, args.hidden, args.layers, args.heads)
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}, "
          f"{len(docs)} documents")
    encoded = [tokenizer(d, add_special_tokens=False).input_ids for d in docs]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.98))
    warmup = max(1, args.steps // 30)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.05 + 0.95 * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / args.steps)))))
    order_rng, order, start = random.Random(args.seed), [], time.perf_counter()
    model.train()
    for step in range(args.steps):
        if len(order) < args.batch_size:
            more = list(range(len(encoded)))
            order_rng.shuffle(more)
            order += more
        batch, order = [encoded[i] for i in order[: args.batch_size]], order[args.batch_size :]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - start:.0f}s", flush=True)
    out = Path(args.out)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)  # safetensors
    tokenizer.save_pretrained(out)
    (out / "pretraining.json").write_text(json.dumps(vars(args) | {"seconds": time.perf_counter() - start},
                                                     indent=1))
    print(f"saved to {out}")


if __name__ == "__main__":
    main()
