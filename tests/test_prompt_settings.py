"""--system-prompt, --prompt-template and --few-shot: the conversation a model sees, built the same way
for training, `latro eval` and `latro dgdiff`; the paper's prompt when none is given."""

import json

import pytest
from conftest import build_tokenizer

from latro.cli import main
from latro.config import EvalConfig, TrainConfig
from latro.errors import SettingError, UserError
from latro.prompts import PromptFormat, encode_prompt, encode_user_message
from latro.tasks import GSM8K, Example, task_from_config
from latro.tasks.arc import ARCChallenge

Q = Example("q1", "What is 3 + 4?", "7")
SHOTS = [{"question": "What is 1 + 1?", "answer": "1 + 1 = 2 #### 2"},
         {"question": "What is 2 + 5?", "answer": "2 + 5 = 7 #### 7"}]


@pytest.fixture
def shots_file(tmp_path):
    path = tmp_path / "shots.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in SHOTS))
    return path


def gsm8k_with(tmp_path, **settings):
    return task_from_config(EvalConfig(task="gsm8k", data_dir=str(tmp_path), **settings))


@pytest.mark.parametrize("chat", [True, False])
def test_default_is_the_papers_prompt_as_the_one_user_message(tmp_path, chat):
    tok = build_tokenizer(chat_template=chat)
    task = gsm8k_with(tmp_path)
    assert task.prompt_format == PromptFormat()
    assert encode_prompt(tok, task, Q) == encode_user_message(tok, "What is 3 + 4? Let's think step by step.")


def test_system_prompt_and_chat_shots_go_through_the_chat_template(tmp_path, shots_file):
    tok = build_tokenizer()
    task = gsm8k_with(tmp_path, system_prompt="Be brief.", few_shot=str(shots_file), num_shots=1)
    turns = [{"role": "system", "content": "Be brief."},
             {"role": "user", "content": "What is 1 + 1? Let's think step by step."},
             {"role": "assistant", "content": "1 + 1 = 2\nThe answer is 2."},
             {"role": "user", "content": "What is 3 + 4? Let's think step by step."}]
    naive = tok.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    assert encode_prompt(tok, task, Q) == tok(naive, add_special_tokens=False).input_ids


def test_text_shots_sit_in_the_user_message_and_without_a_chat_template_turns_are_plain_text(tmp_path, shots_file):
    task = gsm8k_with(tmp_path, few_shot=str(shots_file), few_shot_format="text")
    user = ("What is 1 + 1? Let's think step by step.\n1 + 1 = 2\nThe answer is 2.\n\n"
            "What is 2 + 5? Let's think step by step.\n2 + 5 = 7\nThe answer is 7.\n\n"
            "What is 3 + 4? Let's think step by step.")
    assert task.prompt_format.messages(task, Q) == [{"role": "user", "content": user}]
    plain = build_tokenizer(chat_template=False)
    chat_task = gsm8k_with(tmp_path, system_prompt="Be brief.", few_shot=str(shots_file), num_shots=1)
    expected = ("Be brief.\n\nWhat is 1 + 1? Let's think step by step.\n\n1 + 1 = 2\nThe answer is 2.\n\n"
                "What is 3 + 4? Let's think step by step.")
    assert encode_prompt(plain, chat_task, Q) == plain(expected).input_ids


def test_template_renders_the_examples_fields(tmp_path):
    template = tmp_path / "mc.j2"
    template.write_text("Q: {{ question }}\n{% for c in choices %}{{ c.label }}={{ c.text }};{% endfor %}\n"
                        "{{ options }}\n{{ prompt.splitlines()[-1] }}\n")
    task = ARCChallenge()
    task.prompt_format = PromptFormat(template=_load(template), template_path=str(template))
    ex = Example("a", "Which is a gas?", "B", choices=(("A", "ice"), ("B", "steam")))
    assert task.prompt_format.user_text(task, ex) == (
        "Q: Which is a gas?\nA=ice;B=steam;\n(A) ice (B) steam\n"
        "Let's think step by step first then print your answer like 'The answer is (one of the options)'.")


def _load(path):
    from latro.prompts import _load_template

    return _load_template(str(path))


@pytest.mark.parametrize("source, message", [
    ("{{ questoin }}", "unknown field 'questoin'; a template may use question, choices, options, id, prompt"),
    ("{{ question }} {{ answer }}", "field 'answer' holds the gold answer, which a prompt must not show"),
    ("{{ question }", ":1: template syntax error: unexpected '}'"),
])
def test_a_bad_template_is_one_line_naming_the_file_and_field(tmp_path, cli_error, source, message):
    template = tmp_path / "bad.j2"
    template.write_text(source)
    error = cli_error(["eval", "--model", "unused", "--task", "arithmetic", "--prompt-template", template])
    assert error.startswith(str(template)) and error.endswith(message), error


def test_a_field_misused_at_render_names_the_template(tmp_path):
    template = tmp_path / "attr.j2"
    template.write_text("{{ question.wording }}")
    fmt = PromptFormat(template=_load(template), template_path=str(template))
    with pytest.raises(UserError, match=rf"^{template}: UndefinedError: .*wording"):
        fmt.user_text(GSM8K(), Q)


def test_shots_from_the_split_evaluated_are_refused(tmp_path, arith_files, cli_error):
    shots = tmp_path / "leak.jsonl"
    third = json.loads((arith_files / "test.jsonl").read_text().splitlines()[2])
    respelt = {**third, "question": "  " + third["question"].upper().replace(" ", "   ")}  # case, spacing
    shots.write_text(json.dumps({"question": "Unrelated?", "answer": "1"}) + "\n" + json.dumps(respelt) + "\n")
    error = cli_error(["eval", "--model", "unused", "--task", "jsonl", "--test-file", arith_files / "test.jsonl",
                       "--few-shot", shots])
    assert error == (f"{shots}:2: this few-shot example is question 'test-3' of the test split (1 such): "
                     "shots must not come from the split evaluated")


def test_shot_settings_are_checked(shots_file, tmp_path):
    with pytest.raises(SettingError, match="num_shots: got 2, but no --few-shot FILE"):
        EvalConfig(num_shots=2)
    with pytest.raises(SettingError, match=f"num_shots: got 3, but {shots_file} holds 2 examples"):
        gsm8k_with(tmp_path, few_shot=str(shots_file), num_shots=3)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "x?", "answer": "no final line"}) + "\n")
    with pytest.raises(UserError, match=rf"{bad}:1: answer has no '#### <number>' final line"):
        gsm8k_with(tmp_path, few_shot=str(bad))  # read by the task, in its own columns


def test_training_drops_shot_questions_and_saves_the_first_prompt(tiny_model_dir, arith_files, tmp_path, capsys):
    train_rows = (arith_files / "train.jsonl").read_text().splitlines()
    shots = tmp_path / "shots.jsonl"
    shots.write_text(train_rows[0] + "\n")
    out = tmp_path / "run"
    main(["train", "--model", str(tiny_model_dir), "--task", "jsonl", "--train-file", str(arith_files / "train.jsonl"),
          "--validation-file", str(arith_files / "validation.jsonl"), "--output-dir", str(out),
          "--system-prompt", "Add carefully.", "--few-shot", str(shots), "--num-samples", "2",
          "--questions-per-step", "2", "--max-rationale-tokens", "4", "--max-steps", "1", "--eval-limit", "1",
          "--eval-max-new-tokens", "2"])
    printed = capsys.readouterr().out
    assert f"dropping 1 training questions that are few-shot examples ({shots}:1)" in printed
    cfg = TrainConfig(model=str(tiny_model_dir), task="jsonl", train_file=str(arith_files / "train.jsonl"),
                      validation_file=str(arith_files / "validation.jsonl"), system_prompt="Add carefully.",
                      few_shot=str(shots))
    task, tok = task_from_config(cfg), build_tokenizer()
    first = task.load("train")[1]  # the first training question once the shot's is dropped
    expected = tok.decode(encode_prompt(tok, task, first))
    assert (out / "prompt.txt").read_text() == expected
    assert f"prompt of the first training question:\n{expected}\n" in printed
    assert expected.count("Add carefully.") == 1 and "What is 0 + 0?" in expected and first.question in expected


def test_eval_and_dgdiff_prompt_as_training_does(tiny_model_dir, arith_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shots = tmp_path / "shots.jsonl"
    shots.write_text((arith_files / "train.jsonl").read_text().splitlines()[0] + "\n")
    common = ["--model", str(tiny_model_dir), "--task", "jsonl", "--test-file", str(arith_files / "test.jsonl"),
              "--limit", "1", "--system-prompt", "Add carefully.", "--few-shot", str(shots)]
    main(["eval", *common, "--samples", "0", "--max-new-tokens", "2", "--output", "eval.json"])
    main(["dgdiff", *common, "--candidates", "2", "--max-new-tokens", "2", "--discriminators", "latro",
          "--output", "dgdiff.json"])
    cfg = EvalConfig(model=str(tiny_model_dir), task="jsonl", test_file=str(arith_files / "test.jsonl"),
                     system_prompt="Add carefully.", few_shot=str(shots))
    task, tok = task_from_config(cfg), build_tokenizer()
    expected = tok.decode(encode_prompt(tok, task, task.load("test")[0]))
    assert "Add carefully." in expected and "What is 0 + 0?" in expected
    assert json.loads((tmp_path / "eval.json").read_text())["configs"]["jsonl"]["prompt"]["first_prompt"] == expected
    assert json.loads((tmp_path / "dgdiff.json").read_text())["first_prompt"] == expected
