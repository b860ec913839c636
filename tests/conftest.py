"""Fixtures: a small byte-level BPE tokenizer of our own and tiny random causal LMs."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    lines = []
    for a in range(0, 60, 7):
        for b in range(1, 30, 4):
            lines.append(f"Tom has {a} apples and buys {b} more. How many apples does he have? "
                         f"Let's think step by step. {a} + {b} = {a + b}. The answer is {a + b}.")
    lines += ["Question: Which is a gas?\nOptions: (A) ice (B) steam (C) rock (D) wood\n"
              "Answer: The answer is (B).", "Therefore, the answer is 12."]
    return lines


def bpe_tokenizer(specials: list[str], **special_names):
    """A byte-level BPE of 400 tokens trained on _corpus(), with `specials` as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special_names)


def build_tokenizer(chat_template: bool = True):
    fast = bpe_tokenizer(["<|pad|>", "<|im_start|>", "<|im_end|>"], pad_token="<|pad|>", eos_token="<|im_end|>",
                         bos_token="<|im_start|>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, seed: int = 0, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=False,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture
def tiny_model(tokenizer):
    return build_model(tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A tiny model saved in Hugging Face format, as a user's local model directory."""
    path = tmp_path_factory.mktemp("tiny-model")
    build_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def arith_files(tmp_path_factory):
    """A small JSONL task (train / validation / test) of additions."""
    path = tmp_path_factory.mktemp("arith")
    splits = {"train": range(0, 24), "validation": range(24, 30), "test": range(30, 36)}
    for split, numbers in splits.items():
        with open(path / f"{split}.jsonl", "w") as f:
            for n in numbers:
                f.write(json.dumps({"question": f"What is {n} + {n % 7}?", "answer": str(n + n % 7)}) + "\n")
    return path


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one process-wide state; tests that train in other precisions need a new one."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def cli_error(capsys):
    """Run `latro` on arguments that hold a user error: returns its one-line message, after
    checking the exit status (2), the `latro: error: ` prefix and that no traceback was printed."""
    from latro.cli import main

    def run(argv: list[str]) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main([str(a) for a in argv])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("latro: error: ")]
        assert exited.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
        return lines[0].removeprefix("latro: error: ")

    return run
