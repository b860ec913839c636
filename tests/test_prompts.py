"""The forced answer ends with the token that closes an assistant turn in the chat template (the
paper scores the end-of-turn token), which for several chat models is not EOS."""

import json

from latro.algorithms import build_trainer
from latro.config import TrainConfig
from latro.prompts import (
    answer_ids,
    encode_user_message,
    end_of_turn_id,
    sft_target_ids,
    stop_token_ids,
)
from latro.rollout import Rollout
from latro.scorer import FORCED
from latro.tasks.base import Example
from latro.tasks.gsm8k import NumericTask

# Phi-3.5-mini-instruct's template: a turn closes with <|end|>, EOS is <|endoftext|>.
PHI_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}"
)


def phi_style_tokenizer(template=PHI_TEMPLATE):
    from conftest import bpe_tokenizer

    specials = ["<|pad|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"]
    fast = bpe_tokenizer(specials, pad_token="<|pad|>", eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                         additional_special_tokens=specials[2:])
    fast.chat_template = template
    return fast


def test_end_of_turn_comes_from_the_chat_template():
    tok = phi_style_tokenizer()
    end, eos = tok.convert_tokens_to_ids("<|end|>"), tok.eos_token_id
    assert end != eos and end_of_turn_id(tok) == end
    assert end_of_turn_id(tok, chat_template=False) == eos  # untemplated prompts end with EOS
    assert stop_token_ids(tok) == {end, eos}
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}\n\n{% endfor %}"  # no closing token
    assert end_of_turn_id(tok) == eos
    tok.chat_template = "{{ raise_exception('roles must alternate') }}"
    assert end_of_turn_id(tok) == eos
    tok.chat_template = None
    assert end_of_turn_id(tok) == eos


def test_forced_answer_and_sft_target_end_with_the_end_of_turn_token():
    tok = phi_style_tokenizer()
    end = tok.convert_tokens_to_ids("<|end|>")
    task, ex = NumericTask(), Example(id="q", question="2 + 5?", answer="7", rationale="2 + 5 = 7")
    prompt = encode_user_message(tok, ex.question)
    z = tok("2 + 5 = 7.", add_special_tokens=False).input_ids
    rollout = Rollout(0, prompt, z, "2 + 5 = 7.", " ", "2 + 5 = 7. The answer is 7.", z, "The answer is", len(z))
    ids = answer_ids(tok, task, ex, rollout)
    assert ids[-1] == end and tok.decode(ids[:-1]) == " The answer is 7."
    assert sft_target_ids(tok, task, ex, prompt)[1][-1] == end
    assert answer_ids(tok, task, ex, rollout, end_id=tok.eos_token_id)[-1] == tok.eos_token_id


def test_training_scores_the_end_of_turn_token(tmp_path, arith_files):
    from conftest import build_model

    tok = phi_style_tokenizer()
    model_dir = tmp_path / "phi-style"
    build_model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    # The model's config lists only EOS as an end token: <|end|> is known from the template alone.
    assert json.loads((model_dir / "config.json").read_text())["eos_token_id"] == tok.eos_token_id
    cfg = TrainConfig(model=str(model_dir), task="jsonl", train_file=str(arith_files / "train.jsonl"),
                      validation_file=str(arith_files / "validation.jsonl"), output_dir=str(tmp_path / "run"),
                      num_samples=2, questions_per_step=2, max_rationale_tokens=6, answer_tokens=0)
    trainer = build_trainer(cfg)
    trainer.step(0)
    batch = trainer.algorithm.last_trajectories
    end = tok.convert_tokens_to_ids("<|end|>")
    for row, segments in zip(batch.input_ids, batch.segments):
        last_answer = (segments == FORCED).nonzero().max()
        assert row[last_answer] == end
    assert end in trainer.stop_ids


def test_chatml_end_of_turn_is_im_end(tokenizer):
    assert end_of_turn_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|im_end|>")
