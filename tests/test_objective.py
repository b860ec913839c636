"""The LaTRO objective: leave-one-out advantages, KL, non-stop penalty, and the gradient of the
loss against the two-term estimator of Prop. 2 computed by hand."""

import math

import pytest
import torch

from latro.estimators import batch_whiten, group_norm, rloo
from latro.objective import k3_kl, latro_objective, nonstop_penalty
from latro.rewards.covo import groups_with_signal
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
    # Equal rewards: nothing to prefer, advantages exactly 0 (no 0/0, no noise divided by eps).
    torch.testing.assert_close(group_norm(rewards, 2, eps=0.0), torch.tensor([-1 / 2**0.5, 1 / 2**0.5, 0.0, 0.0]))
    assert group_norm(torch.tensor([0.1, 0.1, 0.1]), 3).tolist() == [0.0, 0.0, 0.0]
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


def objective(**kw):
    args = {"answer_logp": torch.zeros(3), "ref_rationale_logp": torch.full((3,), -10.0),
            "stopped": torch.ones(3, dtype=torch.bool), "group_size": 3, "gamma": 2.0, "answer_weight": 0.0,
            "estimator": group_norm}
    return latro_objective(**{**args, **kw})


def test_kl_in_the_reward_is_rescaled_by_group_norm_and_in_the_loss_it_is_not():
    # One question, K = 3, a unanimous task reward (1 each); only the KL to pi_0 differs: 0, -0.5, +0.5.
    policy_z, reward = torch.tensor([-10.0, -10.5, -9.5]), torch.ones(3)
    for beta in (0.05, 0.005):  # inside the reward, beta hardly matters: the KL is scaled to unit size
        out = objective(rationale_logp=policy_z, reward=reward, beta=beta, kl_in="reward")
        torch.testing.assert_close(out.kl, torch.tensor([0.0, -0.5, 0.5]))
        a = 0.5 * beta / (0.5 * beta + 1e-4)  # (r - mean) / (std + eps), std = 0.5 beta
        torch.testing.assert_close(out.advantages, torch.tensor([0.0, a, -a]), rtol=1e-4, atol=1e-6)
    assert a > 0.96  # beta 0.005: 0.9615; beta 0.05: 0.9960
    # In the loss: the unanimous group has no advantage, the loss is beta x the mean per-token KL.
    kl_loss = torch.tensor([0.1, 0.2, 0.3], requires_grad=True)
    out = objective(rationale_logp=policy_z.clone().requires_grad_(), reward=reward, beta=0.05, kl_in="loss",
                    kl_loss=kl_loss)
    assert out.advantages.tolist() == [0.0, 0.0, 0.0] and out.rewards.tolist() == [1.0, 1.0, 1.0]
    assert out.loss.item() == pytest.approx(0.05 * 0.2)
    out.loss.backward()
    torch.testing.assert_close(kl_loss.grad, torch.full((3,), 0.05 / 3))
    with pytest.raises(ValueError, match="kl_in"):
        objective(rationale_logp=policy_z, reward=reward, beta=0.05, kl_in="advantage")


def test_k3_kl_by_hand():
    # Row 0 scores two sampled tokens then one answer token; row 1 one sampled token after a longer prompt.
    segments = torch.tensor([[0, 1, 1, 2], [0, 0, 1, 0]])
    logp = torch.tensor([-1.0, -2.0, -0.5, -3.0], requires_grad=True)
    ref = torch.tensor([-1.5, -2.0, -9.0, -2.0])
    k3 = lambda d: math.exp(d) - d - 1  # d = log pi_0 - log pi
    got = k3_kl(logp, ref, segments)
    torch.testing.assert_close(got, torch.tensor([(k3(-0.5) + k3(0.0)) / 2, k3(1.0)]))  # the answer token: no KL
    got.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([(1 - math.exp(-0.5)) / 2, 0.0, 0.0, 1 - math.e]))
    assert k3_kl(logp, ref, torch.tensor([[0, 2, 2, 2], [0, 0, 0, 2]])).tolist() == [0.0, 0.0]  # nothing sampled


def test_nonstop_penalty_applies_to_the_latro_part_only():
    # latro = -1 for both rollouts, plus a positive reward worth 3 each; the second never stopped.
    latro, other = torch.tensor([-1.0, -1.0]), torch.tensor([3.0, 3.0])
    kw = {"rationale_logp": torch.zeros(2), "answer_logp": torch.zeros(2), "ref_rationale_logp": None,
          "stopped": torch.tensor([True, False]), "group_size": 2, "beta": 0.0, "gamma": 2.0, "answer_weight": 1.0,
          "estimator": rloo}
    out = latro_objective(reward=latro, extra_reward=other, **kw)
    assert out.rewards.tolist() == [2.0, 1.0]  # -1 + 3, then 2 x (-1) + 3: a penalty
    assert latro_objective(reward=latro + other, **kw).rewards.tolist() == [2.0, 4.0]  # on the sum: a bonus


def test_covo_filter_drops_unanimous_groups_from_the_loss_and_the_whitening():
    # Group 0 agreed on one answer (CoVo reward 0 each); group 1 has two clusters.
    covo = torch.tensor([0.0, 0.0, 0.0, 0.5, 0.0, 0.5])
    keep = groups_with_signal(covo, 3)
    assert keep.tolist() == [False, False, False, True, True, True]
    whitened_all = batch_whiten(covo, 3)
    assert whitened_all[0].item() == pytest.approx(-(1 / 6) / (1 / 15) ** 0.5, rel=1e-3)  # -0.65: pushed away
    std = (1 / 12) ** 0.5  # of [0.5, 0, 0.5]
    expected = [0.0, 0.0, 0.0, (1 / 6) / std, -(1 / 3) / std, (1 / 6) / std]
    torch.testing.assert_close(batch_whiten(covo, 3, keep=keep), torch.tensor(expected), rtol=1e-3, atol=1e-6)
    # Two processes with the same share: the kept rewards of both make the statistics.
    twice = batch_whiten(covo, 3, keep=keep, gather=lambda t: torch.cat([t, t]))
    torch.testing.assert_close(twice[3:], (covo[3:] - 1 / 3) / (1 / 15) ** 0.5, rtol=1e-3, atol=1e-6)
    z = torch.arange(1.0, 7.0, requires_grad=True)
    out = latro_objective(rationale_logp=z, answer_logp=torch.zeros(6), ref_rationale_logp=None, reward=covo,
                          stopped=torch.ones(6, dtype=torch.bool), group_size=3, beta=0.0, gamma=2.0,
                          answer_weight=1.0, estimator=batch_whiten, keep=keep)
    out.loss.backward()  # the mean over the 3 kept rollouts
    torch.testing.assert_close(z.grad, -out.advantages * keep / 3)
    assert z.grad[:3].tolist() == [0.0, 0.0, 0.0]
    # A group kept by a positive reward, and the linear form's negative rewards that still rank samples.
    assert groups_with_signal(torch.tensor([0.0, 0.01, -0.2, -0.4]), 2).tolist() == [True, True, True, True]


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
