"""SELF-[IN]CORRECT's DG-DIFF: McNemar on known counts, the choice parser, and `latro dgdiff` end
to end on a tiny model."""

import json
import math

import pytest
import torch

from latro.cli import main
from latro.dgdiff import (
    bootstrap_interval,
    dg_statistics,
    judge_prompt,
    mcnemar_one_sided,
    parse_choice,
)


def test_mcnemar_one_sided_known_counts():
    z, p = mcnemar_one_sided(10, 4)
    assert z == pytest.approx(6 / math.sqrt(14)) and p == pytest.approx(0.05442, abs=1e-4)
    z, p = mcnemar_one_sided(4, 10)
    assert z == pytest.approx(-6 / math.sqrt(14)) and p == pytest.approx(1 - 0.05442, abs=1e-4)
    assert mcnemar_one_sided(25, 9)[1] < 0.05 < mcnemar_one_sided(20, 12)[1]  # z = 2.74 vs 1.41
    assert mcnemar_one_sided(0, 0) == (0.0, 1.0)  # no discordant pair: no evidence against H0


def test_dg_statistics_by_hand():
    # 3 questions x n = 4 candidates; right candidates: 1 of 4, 4 of 4, 2 of 4.
    correct = [True, False, False, False, True, True, True, True, False, True, False, True]
    choices = [0, 2, None]  # question 3: unparseable -> its worst candidate (wrong)
    gen_pick = [1, 3, 1]  # the paired random picks: wrong, right, right
    r = dg_statistics(correct, choices, gen_pick, 4, seed=0)
    assert r["s_gen"] == pytest.approx((1 / 4 + 1 + 2 / 4) / 3)  # mean accuracy of all candidates: 7/12
    assert r["s_disc"] == pytest.approx(2 / 3) and r["s_gen_pick"] == pytest.approx(2 / 3)
    assert r["dg_diff"] == pytest.approx(2 / 3 - 7 / 12)
    assert (r["n10"], r["n01"]) == (1, 1) and r["unparseable"] == pytest.approx(1 / 3)  # McNemar on the pick
    lo, hi = r["dg_diff_ci95"]
    assert lo < r["dg_diff"] < hi
    # Per-question differences 0.75, 0, -0.5: the extremes of the bootstrap means are -0.5 and 0.75.
    assert -0.5 <= lo and hi <= 0.75


def test_bootstrap_interval_by_exact_enumeration():
    # Two questions: resampled means are d1 (p = 1/4), (d1 + d2) / 2 (p = 1/2), d2 (p = 1/4), so the
    # 2.5% and 97.5% quantiles are d1 and d2.
    assert bootstrap_interval([-0.25, 1.0], seed=0) == (-0.25, 1.0)
    assert bootstrap_interval([0.5] * 7, seed=3) == (0.5, 0.5)
    # Many questions: the interval is close to mean +- 1.96 standard errors.
    values = [1.0] * 30 + [0.0] * 70
    se = (0.3 * 0.7 / 100) ** 0.5
    lo, hi = bootstrap_interval(values, seed=0)
    assert lo == pytest.approx(0.3 - 1.96 * se, abs=0.01) and hi == pytest.approx(0.3 + 1.96 * se, abs=0.01)


def test_parse_choice_takes_the_last_valid_marker():
    assert parse_choice("Solution 2 is wrong.\nTherefore, the final choice is:\n### 3", 4) == 2
    assert parse_choice("### 1 ... on reflection ### 4", 4) == 3
    assert parse_choice("### 5", 4) is None and parse_choice("### 0", 4) is None
    assert parse_choice("I pick the second one", 4) is None
    text = judge_prompt("What is 2 + 2?", ["2 + 2 = 4\nThe answer is 4.", "The answer is 5.", "a", "b"])
    assert text.startswith("What is 2 + 2?") and "Solution 4:\nb" in text
    assert text.endswith('"Therefore, the final choice is:\n### <1,2,3 or 4>"')


def test_dgdiff_cli_writes_every_candidate_and_choice(tiny_model_dir, arith_files, tmp_path, capsys):
    out = tmp_path / "dg.json"
    main(["dgdiff", "--model", str(tiny_model_dir), "--task", "jsonl", "--test-file", str(arith_files / "test.jsonl"),
          "--limit", "3", "--max-new-tokens", "6", "--answer-tokens", "4", "--judge-max-new-tokens", "6",
          "--output", str(out)])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    names = ["prompt", "prompt_forced", "latro", "covo", "self_certainty", "majority", "latro_gold"]
    assert list(report["discriminators"]) == names and report["n"] == 3 and report["candidates"] == 4
    assert all(name in printed for name in names) and "DG-DIFF" in printed
    for r in report["discriminators"].values():
        assert r["dg_diff"] == pytest.approx(r["s_disc"] - r["s_gen"]) and 0 <= r["unparseable"] <= 1
        assert r["s_gen"] == report["s_gen"] and r["s_gen_pick"] == report["s_gen_pick"]
        assert r["dg_diff_ci95"][0] <= r["dg_diff"] <= r["dg_diff_ci95"][1]
    outcomes = [c["correct"] for record in report["records"] for c in record["candidates"]]
    assert report["s_gen"] == pytest.approx(sum(outcomes) / len(outcomes))  # every candidate counts
    assert "95% CI" in printed
    for record in report["records"]:
        assert len(record["candidates"]) == 4 and 0 <= record["gen_pick"] < 4
        assert set(record["choices"]) == set(names) and "judge" in record
        assert set(record["candidates"][0]["scores"]) == set(names) - {"prompt", "prompt_forced"}
        assert record["choices"]["prompt_forced"] in range(4)  # a forced choice always parses
        for name in names[2:]:  # a score discriminator picks its highest-scoring candidate
            scores = [c["scores"][name] for c in record["candidates"]]
            assert scores[record["choices"][name]] == max(scores)


@pytest.mark.parametrize("flags,message", [
    (["--candidates", "1"], "--candidates: got 1, expected an integer >= 2"),
    (["--discriminators", "prompt,oracle"], ("--discriminators: got 'prompt,oracle', expected a comma-separated "
                                             "list of prompt, prompt_forced, latro,")),
    (["--temperature", "0"], "--temperature: got 0.0, expected a number > 0")])
def test_dgdiff_rejects_bad_settings(tiny_model_dir, arith_files, cli_error, flags, message):
    assert cli_error(["dgdiff", "--model", tiny_model_dir, "--task", "jsonl",
                      "--test-file", arith_files / "test.jsonl", "--limit", "1", *flags]).startswith(message)


@pytest.mark.parametrize("multi_token_choices", [False, True])
def test_forced_choice_is_the_likeliest_index_by_a_plain_forward(tiny_model, tokenizer, multi_token_choices):
    """prompt_forced picks argmax_k log p(" k" | judge prompt + forced lead), whether " k" is one
    token (one pass per prompt) or several (the shared-prefix branches)."""
    from types import SimpleNamespace

    from latro.dgdiff import _forced_choice

    class Tok:  # the tiny tokenizer, with " k" split into two tokens where asked
        pad_token_id = tokenizer.pad_token_id

        def __call__(self, text, add_special_tokens=False):
            ids = tokenizer(text, add_special_tokens=False).input_ids
            if multi_token_choices and text.startswith(" ") and text[1:].isdigit():
                ids = tokenizer(" ", add_special_tokens=False).input_ids + tokenizer(text[1:]).input_ids
            return SimpleNamespace(input_ids=ids)

    g = torch.Generator().manual_seed(3)
    prompts = {q: torch.randint(3, len(tokenizer), (n,), generator=g).tolist() for q, n in ((0, 12), (2, 7), (3, 20))}
    choices = _forced_choice(tiny_model, Tok(), prompts, 4, SimpleNamespace(batch_size=2), count=4)
    lead = Tok()("Therefore, the final choice is:\n###").input_ids
    tiny_model.eval()
    for q in range(4):
        if q not in prompts:
            assert choices[q] is None  # no judge prompt (too long): no choice
            continue
        scores = []
        for k in range(1, 5):
            digit = Tok()(f" {k}").input_ids
            text = prompts[q] + lead + digit
            with torch.no_grad():
                logp = torch.log_softmax(tiny_model(torch.tensor([text])).logits[0], -1)
            scores.append(sum(logp[len(text) - len(digit) + i - 1, t].item() for i, t in enumerate(digit)))
        assert choices[q] == max(range(4), key=lambda k: (scores[k], -k))
