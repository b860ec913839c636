"""The model card of a trained model, `latro eval` adding its results to it, and --push-to-hub (the
Hub itself is not reached: HfApi is replaced by a recorder, so only the calls' arguments are tested)."""

import json

import pytest
import yaml
from huggingface_hub import ModelCard

from latro.cli import main
from latro.config import TrainConfig
from latro.errors import SettingError


def train_argv(model_dir, data, out, *extra):
    return ["train", "--model", str(model_dir), "--task", "jsonl", "--train-file", str(data / "train.jsonl"),
            "--validation-file", str(data / "validation.jsonl"), "--output-dir", str(out), "--num-samples", "2",
            "--questions-per-step", "2", "--max-rationale-tokens", "4", "--max-steps", "2", "--eval-every", "1",
            "--eval-limit", "2", "--eval-max-new-tokens", "2", "--save-every", "2", *extra]


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records each call, uploads nothing."""

    calls: list = []

    def __init__(self, fail: bool = False):
        self.fail = fail

    def create_repo(self, **kw):
        from huggingface_hub import RepoUrl

        RecordingApi.calls.append(("create_repo", kw))
        return RepoUrl(f"https://huggingface.co/{kw['repo_id']}")

    def upload_folder(self, **kw):
        RecordingApi.calls.append(("upload_folder", kw))
        if self.fail:
            raise ConnectionError("Hub unreachable")


@pytest.fixture
def trained(tiny_model_dir, arith_files, tmp_path_factory, monkeypatch):
    """A two-step run pushed to a (recorded) Hub repository."""
    import huggingface_hub

    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    out = tmp_path_factory.mktemp("card") / "run"
    main(train_argv(tiny_model_dir, arith_files, out, "--push-to-hub", "someone/tiny-latro", "--hub-private"))
    return out


def test_final_and_best_models_carry_a_card_of_the_run(trained, tiny_model_dir):
    card = ModelCard.load(trained / "model" / "README.md")
    assert card.data.library_name == "transformers" and "latro" in card.data.tags
    assert card.data.base_model is None  # a local directory is no hub id
    assert "arxiv.org/abs/2411.04282" in card.text and "log-likelihood of the gold answer" in card.text
    assert "beta=0.05" in card.text and "`rloo` estimator" in card.text
    settings = yaml.safe_load(card.text.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert settings == yaml.safe_load((trained / "config.yaml").read_text())
    metrics = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    last = metrics[-1]["validation_accuracy"]
    assert f"| jsonl | validation (2 questions) | greedy accuracy | {100 * last:.1f}% | step 2 |" in card.text
    best = json.loads((trained / "best-model" / "best.json").read_text())
    best_card = (trained / "best-model" / "README.md").read_text()
    assert (f"| {100 * best['validation_accuracy']:.1f}% | step {best['step']}, the best validation accuracy "
            "of the run |") in best_card


def test_push_to_hub_creates_the_repo_and_uploads_the_final_model(trained):
    (create, kw_create), (upload, kw_upload) = RecordingApi.calls
    assert create == "create_repo" and kw_create == {"repo_id": "someone/tiny-latro", "repo_type": "model",
                                                      "private": True, "exist_ok": True}
    assert upload == "upload_folder" and kw_upload["repo_id"] == "someone/tiny-latro"
    assert kw_upload["folder_path"] == str(trained / "model") and kw_upload["repo_type"] == "model"
    assert (trained / "model" / "README.md").exists()  # the card is in the folder uploaded


def test_latro_eval_adds_its_results_to_the_card(trained, arith_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["eval", "--model", str(trained / "model"), "--task", "jsonl", "--test-file",
            str(arith_files / "test.jsonl"), "--limit", "3", "--samples", "2", "--max-new-tokens", "2"]
    main(argv)
    main(argv)  # again: replaces the rows of the same task and split, does not add more
    report = json.loads(next((tmp_path / "eval-results").rglob("eval-jsonl-test.json")).read_text())
    text = (trained / "model" / "README.md").read_text()
    for metric in ("greedy", "maj@2", "pass@2"):
        row = f"| jsonl | test (3 questions) | {metric} | {100 * report['results']['jsonl'][metric]:.1f}% |"
        assert text.count(row) == 1, text
    assert "| jsonl | validation (2 questions) |" in text  # the training results stay


def test_a_failed_upload_says_the_model_is_saved(tiny_model_dir, arith_files, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: RecordingApi(fail=True))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        main(train_argv(tiny_model_dir, arith_files, out, "--push-to-hub", "someone/tiny-latro"))
    err = capsys.readouterr().err
    assert exited.value.code == 1 and "Traceback" not in err
    assert (f"latro: error: --push-to-hub someone/tiny-latro: the model is saved in {out / 'model'}, but the upload "
            "failed (ConnectionError: Hub unreachable)") in err
    assert (out / "model" / "model.safetensors").exists()


def test_a_bad_repository_id_is_refused_before_training():
    with pytest.raises(SettingError, match="push_to_hub: got 'not a/valid/id', expected a repository id"):
        TrainConfig(model="m", push_to_hub="not a/valid/id")
