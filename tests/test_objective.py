"""The LaTRO objective: leave-one-out advantages, KL, non-stop penalty, and the gradient of the
loss against the two-term estimator of Prop. 2 computed by hand."""

import pytest
import torch

from latro.estimators import batch_whiten, group_norm, rloo
from latro.objective import latro_objective, nonstop_penalty
from latro.scorer import TokenScorer, make_batch, sequence_logprobs


def test_rloo_by_hand():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, -1.0, -1.0, -4.0, 2.0])
    adv = rloo(rewards, group_size=4)
    expected = [1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3, -1 - (-3) / 3, -1 - (-3) / 3, -4 - 0 / 3, 2 - (-6) / 3]
    torch.testing.assert_close(adv, torch.tensor(expected))
    assert abs(adv[:4].sum().item()) < 1e-6  # a leave-one-out baseline sums to zero in each group
    with pytest.raises(ValueError):
        rloo(rewards, group_size=1)


def test_group_norm_and_batch_whiten_by_hand():
    rewards = torch.tensor([1.0, 3.0, 10.0, 10.0])
    torch.testing.assert_close(group_norm(rewards, 2, eps=0.0),
                               torch.tensor([-1 / 2**0.5, 1 / 2**0.5, float("nan"), float("nan")]),
                               equal_nan=True)
    torch.testing.assert_close(group_norm(rewards, 2)[2:], torch.zeros(2))  # equal rewards: no signal
    mean, std = 6.0, torch.tensor([1.0, 3.0, 10.0, 10.0]).std().item()
    torch.testing.assert_close(batch_whiten(rewards, 2, eps=0.0), (rewards - mean) / std)
    # Several processes: the statistics are the global batch's, the output this process's share.
    other = torch.tensor([0.0, 0.0, 4.0, 2.0])
    pooled = torch.cat([rewards, other])
    torch.testing.assert_close(batch_whiten(rewards, 2, eps=0.0, gather=lambda r: torch.cat([r, other])),
                               (rewards - pooled.mean()) / pooled.std())


def test_kl_enters_the_reward_and_nonstop_penalty_uses_batch_mean():
    policy_z = torch.tensor([-10.0, -12.0, -8.0, -20.0])
    ref_z = torch.tensor([-11.0, -12.0, -6.0, -20.0])
    answer = torch.tensor([-2.0, -4.0, -1.0, -3.0])
    stopped = torch.tensor([True, True, True, False])
    out = latro_objective(rationale_logp=policy_z, answer_logp=answer, ref_rationale_logp=ref_z,
                          reward=answer, stopped=stopped, group_size=2, beta=0.5, gamma=2.0,
                          answer_weight=1.0, estimator=rloo)
    torch.testing.assert_close(out.kl, torch.tensor([1.0, 0.0, -2.0, 0.0]))
    raw = [-2.0 - 0.5, -4.0, -1.0 + 1.0, -3.0]
    penalised = raw[:3] + [2.0 * sum(raw) / 4]
    torch.testing.assert_close(out.rewards, torch.tensor(penalised))
    torch.testing.assert_close(out.advantages, torch.tensor(
        [penalised[0] - penalised[1], penalised[1] - penalised[0], penalised[2] - penalised[3],
         penalised[3] - penalised[2]]))
    torch.testing.assert_close(nonstop_penalty(torch.tensor([-1.0, -3.0]), torch.tensor([True, False]), 2.0),
                               torch.tensor([-1.0, -4.0]))


def seq_logp(model, prompt, tokens, start):
    """log p of tokens[start:] given everything before, by a plain full forward of one sequence."""
    seq = torch.tensor([prompt + tokens])
    logp = torch.log_softmax(model(seq).logits[0], -1)
    first = len(prompt) + start
    return sum((logp[t - 1, seq[0, t]] for t in range(first, seq.shape[1])), logp.new_zeros(()))


@pytest.mark.parametrize("answer_weight", [1.0, 0.0])
def test_loss_gradient_is_the_prop2_estimator(tokenizer, answer_weight):
    from conftest import build_model

    policy, ref = build_model(tokenizer, seed=1).double(), build_model(tokenizer, seed=2).double()
    g = torch.Generator().manual_seed(0)
    rand = lambda n: torch.randint(3, len(tokenizer), (n,), generator=g).tolist()
    prompts = [rand(4)] * 3 + [rand(6)] * 3  # N = 2 questions, K = 3
    rationales = [rand(n) for n in (5, 2, 7, 3, 0, 4)]
    answers = [rand(3)] * 3 + [rand(2)] * 3
    stopped = torch.tensor([True, True, False, True, True, True])
    beta, gamma, K = 0.1, 2.0, 3

    batch = make_batch(prompts, rationales, answers, pad_id=tokenizer.pad_token_id)
    logp = sequence_logprobs(TokenScorer(policy)(batch.input_ids, batch.attention_mask, batch.segments),
                             batch.segments)
    with torch.no_grad():
        ref_logp = sequence_logprobs(TokenScorer(ref)(batch.input_ids, batch.attention_mask, batch.segments),
                                     batch.segments).rationale
    out = latro_objective(rationale_logp=logp.rationale, answer_logp=logp.answer, ref_rationale_logp=ref_logp,
                          reward=logp.answer.detach(), stopped=stopped, group_size=K, beta=beta, gamma=gamma,
                          answer_weight=answer_weight, estimator=rloo)
    out.loss.backward()
    got = [p.grad.clone() for p in policy.parameters()]
    policy.zero_grad()

    # By hand, with plain Python numbers for the reward side.
    lz = [seq_logp(policy, p, z, 0) for p, z in zip(prompts, rationales)]
    ly = [seq_logp(policy, p, z + y, len(z)) for p, z, y in zip(prompts, rationales, answers)]
    with torch.no_grad():
        lz0 = [float(seq_logp(ref, p, z, 0)) for p, z in zip(prompts, rationales)]
    r = [ly[i].item() - beta * (lz[i].item() - lz0[i]) for i in range(6)]
    mean_r = sum(r) / 6
    r = [r[i] if stopped[i] else gamma * mean_r for i in range(6)]
    A = [r[i] - sum(r[j] for j in range(6) if j // K == i // K and j != i) / (K - 1) for i in range(6)]
    estimate = sum(A[i] * lz[i] + answer_weight * ly[i] for i in range(6)) / 6
    torch.testing.assert_close(out.advantages, torch.tensor(A, dtype=torch.double))
    (-estimate).backward()  # the loss is minus the objective whose gradient Prop. 2 estimates
    for a, b in zip(got, (p.grad for p in policy.parameters())):
        # float64 model; transformers' RMSNorm still rounds through float32, hence the tolerance.
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(x.abs().sum() > 0 for x in got)
