"""Rollout engine: stop-pattern cutting and early stopping, on scripted and real tiny models."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from latro.rollout import StopMatcher, sample

PATTERNS = ["The answer is", "Answer:", "Therefore, the answer is"]


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


def test_cut_excludes_pattern_and_keeps_text_before_it(tokenizer):
    matcher = StopMatcher(tokenizer, PATTERNS, {tokenizer.eos_token_id})
    tokens = ids(tokenizer, "3 + 4 = 7. The answer is 7.")
    n, gap, stop = matcher.cut(tokens)
    rationale = tokenizer.decode(tokens[:n])
    assert stop == "The answer is"
    assert rationale + gap == "3 + 4 = 7. "
    assert "answer" not in rationale


def test_pattern_split_across_many_tokens_is_found(tokenizer):
    # Character-level tokens: the pattern is spread over 13 tokens.
    tokens = [t for ch in "so 9. The answer is 9" for t in ids(tokenizer, ch)]
    matcher = StopMatcher(tokenizer, PATTERNS, set())
    assert not matcher.hit(tokens[: -len(" is 9")])  # "...The answer" : not yet
    assert matcher.hit(tokens[: -len(" 9")])  # "...The answer is" completed by the last token
    n, gap, stop = matcher.cut(tokens)
    assert tokenizer.decode(tokens[:n]) + gap == "so 9. "


def test_no_pattern_keeps_everything(tokenizer):
    matcher = StopMatcher(tokenizer, PATTERNS, {tokenizer.eos_token_id})
    tokens = ids(tokenizer, "Tom has 3 apples and buys 4 more")
    assert matcher.cut(tokens) == (len(tokens), "", None)


def test_pattern_at_position_zero_gives_empty_rationale(tokenizer):
    matcher = StopMatcher(tokenizer, PATTERNS, set())
    tokens = ids(tokenizer, "The answer is 5.")
    assert matcher.cut(tokens) == (0, "", "The answer is")


def test_earliest_of_several_patterns_wins(tokenizer):
    matcher = StopMatcher(tokenizer, PATTERNS, set())
    tokens = ids(tokenizer, "7 apples. Answer: 7. The answer is 7.")
    n, gap, stop = matcher.cut(tokens)
    assert stop == "Answer:" and tokenizer.decode(tokens[:n]) + gap == "7 apples. "


def test_end_token_stops_and_is_excluded(tokenizer):
    eos = tokenizer.eos_token_id
    matcher = StopMatcher(tokenizer, PATTERNS, {eos})
    tokens = ids(tokenizer, "4 + 4 = 8") + [eos] + ids(tokenizer, " junk")
    n, gap, stop = matcher.cut(tokens)
    assert stop == "<|im_end|>" and tokenizer.decode(tokens[:n]) == "4 + 4 = 8" and gap == ""


class ScriptedLM(nn.Module):
    """Writes a fixed text per prompt, then filler forever. Stateless: a row's prompt is told by
    its left padding in the attention mask, its step by its position id."""

    def __init__(self, config, scripts: dict[int, tuple[int, list[int]]], filler: int):
        super().__init__()
        self.config = config
        self.scripts, self.filler = scripts, filler  # left pad count -> (prompt length, tokens)
        self.weight = nn.Parameter(torch.zeros(1))
        self.batch_sizes = []

    def forward(self, input_ids, attention_mask, position_ids, past_key_values, use_cache, logits_to_keep=0):
        self.batch_sizes.append(input_ids.shape[0])
        logits = torch.full((input_ids.shape[0], 1, self.config.vocab_size), -1e9)
        for row in range(input_ids.shape[0]):
            prompt_len, script = self.scripts[int(attention_mask[row].argmax())]
            step = int(position_ids[row, -1]) + 1 - prompt_len
            logits[row, 0, script[step] if step < len(script) else self.filler] = 0.0
        return SimpleNamespace(logits=logits, past_key_values=past_key_values)


def test_each_row_stops_at_its_own_pattern_and_leaves_the_batch(tokenizer, tiny_model):
    short, long = ids(tokenizer, "1"), ids(tokenizer, "What is 4 + 5?")
    fast = ids(tokenizer, "2 + 2 = 4. The answer is 4.")
    slow = ids(tokenizer, "4 + 5 = 9 and 9 is odd so we get 9 in all. Answer: 9")
    filler = ids(tokenizer, "x")[0]
    lm = ScriptedLM(tiny_model.config, {len(long) - len(short): (len(short), fast), 0: (len(long), slow)},
                    filler)
    out = sample(lm, tokenizer, [short, long], num_samples=2, max_new_tokens=60, temperature=0.0,
                 stop_patterns=PATTERNS, stop_token_ids={tokenizer.eos_token_id})
    assert [r.prompt_index for r in out] == [0, 0, 1, 1]
    assert all(r.stopped for r in out)
    assert out[0].stop == "The answer is" and out[2].stop == "Answer:"
    assert tokenizer.decode(out[0].rationale_ids) + out[0].gap == "2 + 2 = 4. "
    assert tokenizer.decode(out[2].rationale_ids) + out[2].gap == "4 + 5 = 9 and 9 is odd so we get 9 in all. "
    # Prefill once per prompt; the finished rows left the batch; nothing ran past the last stop.
    assert lm.batch_sizes[0] == 2 and lm.batch_sizes[1] == 4 and lm.batch_sizes[-1] == 2
    assert len(lm.batch_sizes) == out[2].num_sampled
    assert "x" not in out[0].completion and "x" not in out[2].completion


def test_budget_exhausted_is_not_stopped(tokenizer, tiny_model):
    prompt = ids(tokenizer, "Tom has 3 apples.")
    out = sample(tiny_model, tokenizer, [prompt], num_samples=3, max_new_tokens=5, temperature=1.0,
                 stop_patterns=[], stop_token_ids=set(), generator=torch.Generator().manual_seed(0))
    assert len(out) == 3
    assert all(r.num_sampled == 5 and not r.stopped and len(r.rationale_ids) == 5 for r in out)


def test_sampling_is_reproducible_and_matches_the_model_distribution(tokenizer, tiny_model):
    prompts = [ids(tokenizer, "Tom has 3 apples."), ids(tokenizer, "What is 4 + 5?")]
    kw = dict(num_samples=2, max_new_tokens=6, temperature=1.0, stop_patterns=[], stop_token_ids=set())
    first = sample(tiny_model, tokenizer, prompts, generator=torch.Generator().manual_seed(3), **kw)
    second = sample(tiny_model, tokenizer, prompts, generator=torch.Generator().manual_seed(3), **kw)
    assert [r.rationale_ids for r in first] == [r.rationale_ids for r in second]
    # Greedy through the KV cache (left padding, shared prefill) equals greedy by full forwards.
    greedy = sample(tiny_model, tokenizer, prompts, num_samples=1, max_new_tokens=6, temperature=0.0,
                    stop_patterns=[], stop_token_ids=set())
    for prompt, rollout in zip(prompts, greedy):
        seq = list(prompt)
        with torch.no_grad():
            for _ in range(6):
                seq.append(int(tiny_model(torch.tensor([seq])).logits[0, -1].argmax()))
        assert rollout.rationale_ids == seq[len(prompt):]


def test_answer_tokens_read_the_own_answer_after_the_pattern(tokenizer, tiny_model):
    """With answer_tokens, a row runs past its stop pattern to its end token (or the allowance);
    the rationale is still cut at the pattern."""
    eos = tokenizer.eos_token_id
    short, long = ids(tokenizer, "1"), ids(tokenizer, "What is 4 + 5?")
    ends = ids(tokenizer, "2 + 2 = 4. The answer is 4.") + [eos]
    rambles = ids(tokenizer, "4 + 5 = 9. The answer is 9")
    filler = ids(tokenizer, "x")[0]
    lm = ScriptedLM(tiny_model.config, {len(long) - len(short): (len(short), ends), 0: (len(long), rambles)},
                    filler)
    out = sample(lm, tokenizer, [short, long], num_samples=1, max_new_tokens=40, temperature=0.0,
                 stop_patterns=PATTERNS, stop_token_ids={eos}, answer_tokens=4)
    assert out[0].completion == "2 + 2 = 4. The answer is 4." and out[0].completion_ids == ends
    assert tokenizer.decode(out[0].rationale_ids) + out[0].gap == "2 + 2 = 4. " and out[0].stopped
    # No end token: exactly answer_tokens more tokens after the one that completed the pattern.
    hit = next(n for n in range(1, len(rambles) + 1) if "The answer is" in tokenizer.decode(rambles[:n]))
    assert out[1].num_sampled == hit + 4 and out[1].stop == "The answer is"
    assert tokenizer.decode(out[1].rationale_ids) + out[1].gap == "4 + 5 = 9. "


def test_each_prompt_can_have_its_own_budget(tokenizer, tiny_model):
    prompts = [ids(tokenizer, "Tom has 3 apples."), ids(tokenizer, "What is 4 + 5?")]
    out = sample(tiny_model, tokenizer, prompts, num_samples=2, max_new_tokens=[3, 7], temperature=1.0,
                 stop_patterns=[], stop_token_ids=set(), generator=torch.Generator().manual_seed(0))
    assert [r.num_sampled for r in out] == [3, 3, 7, 7] and not any(r.stopped for r in out)
    with pytest.raises(ValueError, match="one budget >= 1 per prompt"):
        sample(tiny_model, tokenizer, prompts, num_samples=1, max_new_tokens=[3], temperature=1.0,
               stop_patterns=[], stop_token_ids=set())
