"""Faults a long run meets, on a tiny model: NaN steps, damaged checkpoints, a full disk, a kill
in the middle of a write, stop signals. (Random kill -9 moments and a real full tmpfs:
scripts/fault_campaign.py.)"""

import errno
import json
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from latro import checkpoint as ckpt
from latro import demo
from latro.algorithms import build_trainer
from latro.checkpoint import NonFiniteError, RunStopped
from latro.cli import main
from latro.config import TrainConfig
from latro.loop import TrainingLoop


def train_args(model_dir, data, out, *extra):
    return ["train", "--model", str(model_dir), "--task", "jsonl",
            "--train-file", str(data / "train.jsonl"), "--validation-file", str(data / "validation.jsonl"),
            "--output-dir", str(out), "--num-samples", "2", "--questions-per-step", "2",
            "--max-rationale-tokens", "8", "--lr", "1e-3", "--lr-schedule", "constant", "--eval-every", "2",
            "--eval-limit", "3", "--eval-max-new-tokens", "6", "--save-every", "2", "--seed", "0", *extra]


def strict_lines(path):
    """metrics.jsonl as strict JSON: a bare NaN or Infinity fails."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def finite_file(path) -> bool:
    return all(torch.isfinite(t).all() for t in load_file(path).values() if t.is_floating_point())


def poison_steps(monkeypatch, steps):
    """Makes the loss NaN at the given (1-based) steps, on the way into the update."""
    update = TrainingLoop.update

    def poisoned(self, loss):
        return update(self, loss * float("nan") if self.step_index + 1 in steps else loss)
    monkeypatch.setattr(TrainingLoop, "update", poisoned)


# ----------------------------------------------------------------- non-finite steps
def run_error(exited, capsys) -> str:
    """A run that failed (not a usage error): exit 1 and one line `latro: error: ...`, no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("latro: error: ")]
    assert exited.value.code == 1 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0].removeprefix("latro: error: ")


def test_nonfinite_step_is_skipped_and_logged_as_null(tiny_model_dir, arith_files, tmp_path, monkeypatch):
    poison_steps(monkeypatch, {2})
    out = tmp_path / "run"
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "3", "--save-every", "1",
                    "--keep-checkpoints", "3", "--lr-schedule", "linear"))
    lines = strict_lines(out / "metrics.jsonl")
    assert [m["skipped_nonfinite"] for m in lines] == [0, 1, 1]
    assert lines[1]["grad_norm"] is None  # NaN, written as null
    assert [m["lr"] for m in lines] == pytest.approx([1e-3, 1e-3 * 2 / 3, 1e-3 / 3])  # the schedule follows the step
    weights = {s: load_file(out / "checkpoints" / f"step-00000{s}" / "model.safetensors") for s in (1, 2, 3)}
    assert all(torch.equal(weights[1][n], weights[2][n]) for n in weights[1])  # step 2 not applied
    assert any(not torch.equal(weights[2][n], weights[3][n]) for n in weights[2])  # step 3 applied
    assert finite_file(out / "model" / "model.safetensors")


def test_consecutive_nonfinite_steps_stop_the_run(tiny_model_dir, arith_files, tmp_path, monkeypatch, capsys):
    poison_steps(monkeypatch, {2, 3, 4})
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "6", "--save-every", "1"))
    message = run_error(stopped, capsys)
    assert "steps 2-4: 3 steps in a row" in message and "weights are those after step 1" in message
    assert [m["step"] for m in strict_lines(out / "metrics.jsonl")] == [1, 2, 3, 4]
    assert not (out / "model").exists()
    assert [p.name for p in ckpt.checkpoints(out / "checkpoints")] == ["step-000002", "step-000003"]


@pytest.fixture(scope="module")
def rationale_files(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft-data")
    for split, numbers in {"train": range(12), "validation": range(12, 15)}.items():
        rows = [{"question": f"What is {n} + 2?", "answer": n + 2, "rationale": f"{n} + 2 = {n + 2}"} for n in numbers]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sft_with_a_huge_learning_rate_stops_and_writes_nothing_non_finite(tiny_model_dir, rationale_files, tmp_path,
                                                                            capsys):
    """The issue's `latro sft --lr 1000`: it used to exit 0 with all-NaN model/, best-model/ and checkpoints."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(["sft", "--model", str(tiny_model_dir), "--task", "jsonl", "--train-file",
              str(rationale_files / "train.jsonl"), "--validation-file", str(rationale_files / "validation.jsonl"),
              "--output-dir", str(out), "--questions-per-step", "4", "--lr", "1000", "--max-steps", "8",
              "--max-rationale-tokens", "16", "--eval-every", "2", "--eval-limit", "2", "--eval-max-new-tokens", "4",
              "--save-every", "2"])
    assert "in a row had a NaN or infinite loss or gradient norm" in run_error(stopped, capsys)
    assert not (out / "model").exists()
    written = list(out.glob("checkpoints/*/model.safetensors")) + list(out.glob("best-model/model.safetensors"))
    assert written and all(finite_file(p) for p in written)
    best = json.loads((out / "best-model" / "best.json").read_text())
    assert (out / "evaluations" / f"validation-step-{best['step']:06d}.json").exists()
    strict_lines(out / "metrics.jsonl")


def test_grad_norm_is_measured_with_clipping_off(tiny_model_dir, arith_files, tmp_path):
    out = tmp_path / "run"
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "2", "--max-grad-norm", "0"))
    assert all(m["grad_norm"] > 0 for m in strict_lines(out / "metrics.jsonl"))


def small_config(model_dir, data, out, **kw):
    settings = {"model": str(model_dir), "task": "jsonl", "train_file": str(data / "train.jsonl"),
                "validation_file": str(data / "validation.jsonl"), "output_dir": str(out), "num_samples": 2,
                "questions_per_step": 2, "max_rationale_tokens": 8, "lr": 1e-3, "eval_every": 0, "eval_limit": 2,
                "eval_max_new_tokens": 4, "save_every": 1, "max_steps": 3}
    return TrainConfig(**{**settings, **kw})


def test_an_update_that_makes_weights_non_finite_stops_before_saving(tiny_model_dir, arith_files, tmp_path):
    trainer = build_trainer(small_config(tiny_model_dir, arith_files, tmp_path / "run"))
    first = next(trainer.policy.parameters())

    def overflow(optimizer, args, kwargs):
        if trainer.step_index == 1:
            first.data[0] = float("inf")
    trainer.optimizer.optimizer.register_step_post_hook(overflow)
    with pytest.raises(NonFiniteError, match="step 2: the update made weights NaN or infinite"):
        trainer.train()
    assert [p.name for p in ckpt.checkpoints(tmp_path / "run" / "checkpoints")] == ["step-000001"]
    assert not (tmp_path / "run" / "model").exists()


def test_a_model_with_nan_weights_is_refused(tiny_model_dir, arith_files, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(broken / "model.safetensors")
    next(iter(weights.values()))[0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SystemExit) as refused:
        main(train_args(broken, arith_files, tmp_path / "run", "--max-steps", "1"))
    assert "hold NaN or infinite values" in run_error(refused, capsys)


# ----------------------------------------------------------------- damaged files and resume
@pytest.fixture(scope="module")
def runs(tiny_model_dir, arith_files, tmp_path_factory):
    """A straight 6-step run, and a 4-step run (checkpoints at steps 2 and 4) to damage and resume."""
    root = tmp_path_factory.mktemp("runs")
    main(train_args(tiny_model_dir, arith_files, root / "straight", "--max-steps", "6"))
    main(train_args(tiny_model_dir, arith_files, root / "four", "--max-steps", "4"))
    return root


def resume_to_six(runs, tiny_model_dir, arith_files, out, capsys):
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "6", "--resume"))
    printed = capsys.readouterr().out
    lines = strict_lines(out / "metrics.jsonl")
    straight = strict_lines(runs / "straight" / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6]
    assert [m["loss"] for m in lines] == [m["loss"] for m in straight]
    expected = load_file(runs / "straight" / "model" / "model.safetensors")
    assert all(torch.equal(t, expected[n]) for n, t in load_file(out / "model" / "model.safetensors").items())
    return printed


def nan_weights(path):
    weights = load_file(path)
    save_file({n: torch.full_like(t, float("nan")) for n, t in weights.items()}, path, metadata={"format": "pt"})


def truncate(path, keep=0.5):
    os.truncate(path, int(path.stat().st_size * keep))


DAMAGE = {
    "empty trainer_state.json": lambda c: truncate(c / "trainer_state.json", 0),
    "truncated model.safetensors": lambda c: truncate(c / "model.safetensors"),
    "truncated optimizer.bin": lambda c: truncate(c / "optimizer.bin"),
    "NaN weights (written by an older version)": lambda c: nan_weights(c / "model.safetensors"),
    "no file sizes (an older version), truncated optimizer.bin": lambda c: (
        (c / "trainer_state.json").write_text(json.dumps({"step": 4, "best_accuracy": 0.0})),
        truncate(c / "optimizer.bin")),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_falls_back_from_a_damaged_checkpoint(runs, tiny_model_dir, arith_files, tmp_path, capsys, damage):
    out = tmp_path / "run"
    shutil.copytree(runs / "four", out)
    shutil.rmtree(out / "model")
    DAMAGE[damage](out / "checkpoints" / "step-000004")
    printed = resume_to_six(runs, tiny_model_dir, arith_files, out, capsys)
    assert "checkpoint" in printed and "step-000004 is unusable" in printed
    assert f"resumed from {out / 'checkpoints' / 'step-000002'} at step 2" in printed
    assert (out / "checkpoints" / "step-000004.damaged").exists()


def test_resume_repairs_what_a_kill_left_half_written(runs, tiny_model_dir, arith_files, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(runs / "four", out)
    shutil.rmtree(out / "model")
    with open(out / "metrics.jsonl", "a") as f:  # step 5's line, cut by a full disk
        f.write('{"step": 5, "epoch": 2.5, "reward_mean": -7')
    half = out / "checkpoints" / "step-000006.tmp"  # a checkpoint being written when killed
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\0" * 100)
    os.rename(out / "best-model", out / "best-model.old")  # killed between the two renames of a swap
    (out / "best-model.tmp").mkdir()
    printed = resume_to_six(runs, tiny_model_dir, arith_files, out, capsys)
    assert "removed the half-written checkpoint step-000006.tmp" in printed
    assert "restored" in printed and "best-model.old" in printed
    assert not list(out.glob("**/*.tmp")) and not list(out.glob("**/*.old"))
    assert (out / "best-model" / "best.json").exists()


def test_a_full_disk_while_checkpointing_gives_one_clear_line(tiny_model_dir, arith_files, tmp_path, monkeypatch,
                                                              capsys):
    """torch.save on a full disk raises `inline_container.cc: unexpected pos`, with no errno; the
    free space (here faked, a real tmpfs in scripts/fault_campaign.py) says what happened."""
    from accelerate import Accelerator

    save_state = Accelerator.save_state

    def fill_the_disk(self, output_dir, **kw):
        if output_dir.endswith("step-000004.tmp"):
            Path(output_dir).mkdir(parents=True)
            (Path(output_dir) / "optimizer.bin").write_bytes(b"\0" * 1000)
            monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(total=10**6, used=10**6, free=0))
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1000 vs 998")
        return save_state(self, output_dir, **kw)
    monkeypatch.setattr(Accelerator, "save_state", fill_the_disk)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as full:
        main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "6"))
    step4 = out / "checkpoints" / "step-000004.tmp"
    assert run_error(full, capsys) == f"no space left on device while writing {step4}"
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000002"]
    monkeypatch.undo()
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "6", "--resume"))
    assert [m["step"] for m in strict_lines(out / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_a_failed_append_leaves_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    ckpt.append_line(path, '{"step": 1}')
    write = os.write

    def half_then_full(fd, data):
        write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(ckpt.DiskFullError, match=f"no space left on device while writing {path}"):
        ckpt.append_line(path, '{"step": 2, "loss": 1.5}')
    assert path.read_text() == '{"step": 1}\n'


def test_a_failed_replacement_keeps_the_previous_file(tmp_path):
    path = tmp_path / "config.yaml"
    ckpt.write_text(path, "lr: 1\n")

    def fail(tmp):
        tmp.write_text("lr:")
        raise OSError(errno.EIO, "I/O error")
    with pytest.raises(OSError, match="I/O error"):
        ckpt.replace_file(path, fail)
    assert path.read_text() == "lr: 1\n" and list(tmp_path.iterdir()) == [path]


# ----------------------------------------------------------------- stopping
def signal_during_step(monkeypatch, at_step, signum=signal.SIGTERM):
    step = TrainingLoop.step

    def step_and_signal(self, i):
        if i + 1 == at_step:
            os.kill(os.getpid(), signum)  # handled by the trainer: finish the step, save, stop
        return step(self, i)
    monkeypatch.setattr(TrainingLoop, "step", step_and_signal)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_and_exits_128_plus_its_number(
        tiny_model_dir, arith_files, tmp_path, monkeypatch, signum):
    signal_during_step(monkeypatch, 3, signum)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "6"))
    assert stopped.value.code == 128 + signum
    assert [p.name for p in ckpt.checkpoints(out / "checkpoints")] == ["step-000002", "step-000003"]
    assert not (out / "model").exists()
    monkeypatch.undo()
    main(train_args(tiny_model_dir, arith_files, out, "--max-steps", "6", "--resume"))
    assert [m["step"] for m in strict_lines(out / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_a_stopped_demo_skips_its_test_evaluation(tiny_model_dir, arith_files, tmp_path, monkeypatch):
    signal_during_step(monkeypatch, 1)
    evaluated = []
    monkeypatch.setattr(demo, "_evaluate_test", lambda trainer, name, limit: evaluated.append(name))
    with pytest.raises(RunStopped):
        demo.run_demo(small_config(tiny_model_dir, arith_files, tmp_path / "demo"))
    assert evaluated == ["base"] and (tmp_path / "demo" / "checkpoints" / "step-000001").exists()
    assert not (tmp_path / "demo" / "demo-summary.json").exists()


def test_a_new_run_refuses_a_directory_with_metrics_but_no_checkpoint(tiny_model_dir, arith_files, tmp_path,
                                                                     cli_error):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    assert "already holds a run (metrics.jsonl): pass --resume" in cli_error(
        train_args(tiny_model_dir, arith_files, out, "--max-steps", "1"))
    assert (out / "metrics.jsonl").read_text() == json.dumps({"step": 1, "loss": 2.0}) + "\n"


def test_a_full_disk_reported_by_safetensors_is_named(tmp_path):
    """safetensors (Rust) reports ENOSPC in its message only, and removes what it wrote."""
    class SafetensorError(Exception):
        pass
    with pytest.raises(ckpt.DiskFullError, match="no space left on device while writing"), \
            ckpt.replace_dir(tmp_path / "model"):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert list(tmp_path.iterdir()) == []
