"""The one-pass scorer against a naive full log-softmax, values and gradients."""

import pytest
import torch

from latro.scorer import FORCED, SAMPLED, TokenScorer, make_batch, sequence_logprobs


def naive_logprobs(model, prompt, rationale, answer):
    """Sum of log-probs of rationale and answer tokens, one sequence, full [T, V] log-softmax."""
    seq = torch.tensor([prompt + rationale + answer])
    logp = torch.log_softmax(model(seq).logits[0].float(), -1)
    token = logp[:-1].gather(-1, seq[0, 1:, None]).squeeze(-1)
    p, z = len(prompt), len(rationale)
    return token[p - 1 : p - 1 + z].sum(), token[p - 1 + z :].sum()


def random_rows(seed, vocab):
    g = torch.Generator().manual_seed(seed)
    shape = lambda lo, hi: torch.randint(3, vocab, (int(torch.randint(lo, hi, (1,), generator=g)),),
                                         generator=g).tolist()
    prompts = [shape(2, 9) for _ in range(5)]
    rationales = [shape(0, 12) for _ in range(5)]
    rationales[1] = []  # an empty rationale (stop pattern at position 0)
    answers = [shape(1, 6) for _ in range(5)]
    return prompts, rationales, answers


@pytest.mark.parametrize("chunk_size", [512, 3])
def test_one_pass_matches_naive_values_and_gradients(tiny_model, tokenizer, chunk_size):
    prompts, rationales, answers = random_rows(0, len(tokenizer))
    batch = make_batch(prompts, rationales, answers, pad_id=tokenizer.pad_token_id)
    scorer = TokenScorer(tiny_model, chunk_size=chunk_size)
    got = sequence_logprobs(scorer(batch.input_ids, batch.attention_mask, batch.segments), batch.segments)
    expected = [naive_logprobs(tiny_model, p, z, y) for p, z, y in zip(prompts, rationales, answers)]
    torch.testing.assert_close(got.rationale, torch.stack([e[0] for e in expected]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.answer, torch.stack([e[1] for e in expected]), rtol=1e-5, atol=1e-5)
    assert got.rationale[1].item() == 0.0

    weights = torch.linspace(-1, 1, 5)
    (weights * got.rationale + got.answer).sum().backward()
    fast = [p.grad.clone() for p in tiny_model.parameters()]
    tiny_model.zero_grad()
    sum(w * e[0] + e[1] for w, e in zip(weights, expected)).backward()
    for a, b in zip(fast, (p.grad for p in tiny_model.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_segments_mark_rationale_then_answer(tokenizer):
    batch = make_batch([[5, 6]], [[7, 8, 9]], [[10]], pad_id=0)
    assert batch.segments.tolist() == [[0, 0, SAMPLED, SAMPLED, SAMPLED, FORCED]]
    padded = make_batch([[5], [5, 6, 7]], [[8], []], [[9], [9, 9]], pad_id=0)
    assert padded.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert padded.segments.tolist() == [[0, SAMPLED, FORCED, 0, 0], [0, 0, 0, FORCED, FORCED]]


def test_padding_token_equal_to_end_token_is_still_scored(tokenizer, tiny_model):
    """The pad id may be the end-of-turn id (SmolLM2): the answer's closing token must count."""
    eos = tokenizer.eos_token_id
    prompts, rationales, answers = [[5, 6, 7, 8], [5]], [[9, 10], [11]], [[12, eos], [12, eos]]
    batch = make_batch(prompts, rationales, answers, pad_id=eos)
    got = sequence_logprobs(TokenScorer(tiny_model)(batch.input_ids, batch.attention_mask, batch.segments),
                            batch.segments)
    for i in range(2):
        _, answer = naive_logprobs(tiny_model, prompts[i], rationales[i], answers[i])
        torch.testing.assert_close(got.answer[i], answer, rtol=1e-5, atol=1e-5)


def test_no_full_vocabulary_tensor_is_kept_for_backward(tiny_model, tokenizer):
    """Saved activations stay far below [tokens, vocab] floats: logits are recomputed per chunk."""
    prompts, rationales, answers = random_rows(1, len(tokenizer))
    batch = make_batch(prompts * 8, rationales * 8, answers * 8, pad_id=tokenizer.pad_token_id)
    vocab, saved = len(tokenizer), []

    def pack(t):
        saved.append(t.numel() if t.dim() >= 2 and t.shape[-1] == vocab and t.shape[0] > 8 else 0)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = TokenScorer(tiny_model, chunk_size=64)(batch.input_ids, batch.attention_mask, batch.segments)
    assert out.numel() > 100
    assert max(saved) == 0  # no saved tensor with a vocabulary dimension over many rows


@pytest.mark.parametrize("batch_size", [64, 3])
def test_branch_logprobs_equal_scoring_each_branch_alone(tiny_model, tokenizer, batch_size):
    """Shared-prefix scoring (one pass per sequence, a masked hole per branch) gives the same
    log-probs as a plain forward over each branch's own text."""
    from latro.scorer import branch_logprobs

    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(3, len(tokenizer), (n,), generator=g).tolist() for n in (9, 14, 5)]
    stems = [[], torch.randint(3, len(tokenizer), (3,), generator=g).tolist()]
    answers = [torch.randint(3, len(tokenizer), (n,), generator=g).tolist() for n in (1, 3)]
    branches = [(s, cut, stem, ans) for s, seq in enumerate(seqs) for cut in (1, len(seq) // 2, len(seq))
                for stem in stems for ans in answers]
    tiny_model.train()  # the function must switch to eval (and back) for its KV cache
    got = branch_logprobs(tiny_model, seqs, branches, batch_size=batch_size, pad_id=tokenizer.pad_token_id)
    assert tiny_model.training
    tiny_model.eval()
    for (s, cut, stem, ans), value in zip(branches, got):
        text = seqs[s][:cut] + stem + ans
        with torch.no_grad():
            logp = torch.log_softmax(tiny_model(torch.tensor([text])).logits[0], -1)
        start = cut + len(stem)
        expected = sum(logp[start + i - 1, t].item() for i, t in enumerate(ans))
        assert value == pytest.approx(expected, abs=1e-4)


def test_next_token_logprobs_equal_a_plain_forward_over_each_sequence(tiny_model, tokenizer):
    """The forced-choice judge's one-pass scoring: left padding in a batch changes nothing."""
    from latro.scorer import next_token_logprobs

    g = torch.Generator().manual_seed(2)
    seqs = [torch.randint(3, len(tokenizer), (n,), generator=g).tolist() for n in (9, 14, 5, 11)]
    wanted = [5, 6, 7, 8]
    tiny_model.train()
    got = next_token_logprobs(tiny_model, seqs, wanted, batch_size=3, pad_id=tokenizer.pad_token_id)
    assert tiny_model.training
    tiny_model.eval()
    for seq, row in zip(seqs, got):
        with torch.no_grad():
            logp = torch.log_softmax(tiny_model(torch.tensor([seq])).logits[0, -1], -1)
        assert row == pytest.approx([logp[t].item() for t in wanted], abs=1e-4)
