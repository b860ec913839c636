"""Fault campaign: does a `latro train` run survive kill -9 at random moments, damaged files, NaN
steps, stop signals and a full disk? Prints tried / survived per group.

    python scripts/fault_campaign.py                       # every group, moderate size
    python scripts/fault_campaign.py --kills 40 --signals 20 --groups kill,signal
    sudo python scripts/fault_campaign.py --groups disk    # the full disk needs root (tmpfs mounts)

Every trial runs `python -m latro.cli train` from this checkout in a subprocess, on a 3M-parameter
model built here (so that writing a checkpoint takes a visible share of a step) and a JSONL
addition task, 8 steps with a checkpoint, a validation and a best model every 2 steps and a
constant learning rate. A reference run does the 8 steps straight. A trial survives when:

  kill     the run is killed (SIGKILL), then its first resume too: one of the two at a random
           moment of training, the other while a checkpoint, model or evaluation is being
           written; a last `--resume` finishes and reproduces the reference exactly: same losses,
           steps 1..8 logged once each in strict JSON, same final weights, same best model, no
           leftover .tmp/.old, nothing non-finite on disk;
  signal   SIGTERM or SIGINT at a random moment of training: the run exits with 128 + signal
           (or finished first), and `--resume` reproduces the reference as above;
  damage   one file of the newest checkpoint or of the run directory is damaged as a disk or a
           kill can leave it: `--resume` falls back, says so, and reproduces the reference;
  nan      NaN losses at chosen steps, or a learning rate that diverges: a single skipped step is
           not applied and the run finishes; a streak stops it with one clear line and a non-zero
           exit; nothing non-finite is written, metrics are strict JSON, the best model is one
           that was evaluated, and `--resume` (without the fault) loads the last checkpoint (a
           model that a huge learning rate wrecked while finite may diverge again: then it stops
           again with the same line);
  disk     the run directory is a tmpfs too small for the run: the run either finishes or stops
           with exactly "no space left on device while writing <path>" (no traceback); after the
           tmpfs is enlarged, `--resume` reproduces the reference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
STEPS = 8
POISON = """
import sys
from latro.loop import TrainingLoop
steps = {%s}
update = TrainingLoop.update
def poisoned(self, loss):
    return update(self, loss * float("nan") if self.step_index + 1 in steps else loss)
TrainingLoop.update = poisoned
from latro.cli import main
main(sys.argv[1:])
"""


# ----------------------------------------------------------------- setting up
def build_inputs(work: Path) -> tuple[Path, Path]:
    """A 3M-parameter Llama with the test suite's tokenizer, and an addition task."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=384, intermediate_size=768, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    model_dir, data = work / "model", work / "data"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data.mkdir()
    for split, numbers in {"train": range(40), "validation": range(40, 46)}.items():
        rows = [{"question": f"What is {n} + {n % 7}?", "answer": str(n + n % 7),
                 "rationale": f"{n} + {n % 7} = {n + n % 7}"} for n in numbers]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return model_dir, data


def train_args(model_dir: Path, data: Path, out: Path, *extra: str, command: str = "train") -> list[str]:
    return [command, "--model", str(model_dir), "--task", "jsonl", "--train-file", str(data / "train.jsonl"),
            "--validation-file", str(data / "validation.jsonl"), "--output-dir", str(out), "--num-samples", "2",
            "--questions-per-step", "2", "--max-rationale-tokens", "8", "--lr", "1e-3", "--lr-schedule", "constant",
            "--eval-every", "2", "--eval-limit", "3", "--eval-max-new-tokens", "6", "--save-every", "2",
            "--keep-checkpoints", "2", "--max-steps", str(STEPS), "--seed", "0", *extra]


def launch(args: list[str], code: str | None = None) -> subprocess.Popen:
    head = [PYTHON, "-c", code] if code else [PYTHON, "-m", "latro.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2"}
    return subprocess.Popen(head + args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate()
    return proc.returncode, out, err


def run(args: list[str], code: str | None = None) -> tuple[int, str, str]:
    return finish(launch(args, code))


def training_began(out: Path, before: int | None) -> bool:
    """config.yaml is (re)written, by an atomic rename, when the training phase starts."""
    try:
        return os.stat(out / "config.yaml").st_ino != before
    except FileNotFoundError:
        return False


def inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def metrics_lines(out: Path) -> int:
    try:
        return (out / "metrics.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def signal_during_training(proc, out: Path, signum: int, step_seconds: float, rng) -> bool:
    """Sends `signum` at a random moment of the training phase: after a random number of the
    steps still to do have been logged, plus a random part of a step (which covers that step's
    validation, checkpoint and best model, and the next step's work). False if the run ended first."""
    before = inode(out / "config.yaml")
    while not training_began(out, before):
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    target = rng.randint(min(metrics_lines(out), STEPS - 1), STEPS - 1)
    while metrics_lines(out) < target:
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 1.5 * step_seconds))
    if proc.poll() is not None:
        return False
    proc.send_signal(signum)
    return True


def writes_in_flight(out: Path) -> set[str]:
    """The temporary files and directories being written in the run directory now."""
    found = set()
    for folder in (out, out / "checkpoints", out / "evaluations"):
        try:
            found |= {str(folder / e.name) for e in os.scandir(folder) if e.name.endswith(".tmp")}
        except FileNotFoundError:
            pass
    return found


def kill_while_writing(proc, out: Path, rng) -> bool:
    """SIGKILL while a file or directory of the run is being written (a checkpoint, a model, an
    evaluation, config.yaml), after letting a random number of such writes pass. False if the
    run ended first."""
    before = inode(out / "config.yaml")
    while not training_began(out, before):
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    seen, skip = set(), rng.randint(0, 3)
    while proc.poll() is None:
        now = writes_in_flight(out)
        if now - seen and len(seen | now) > skip:
            proc.kill()  # the polling's own delay places the kill within the write
            return True
        seen |= now
        time.sleep(0.002)
    return False


# ----------------------------------------------------------------- checking a run directory
def strict_lines(path: Path) -> list[dict]:
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def nonfinite_files(out: Path) -> list[str]:
    """Written files holding NaN or infinity (checkpoints set aside as damaged excepted)."""
    import torch
    from safetensors.torch import load_file

    bad = []
    written = lambda pattern: sorted(p for p in out.rglob(pattern) if not p.parent.name.endswith(".damaged"))
    for path in written("*.safetensors"):
        if any(t.is_floating_point() and not torch.isfinite(t).all() for t in load_file(path).values()):
            bad.append(str(path.relative_to(out)))
    for path in written("optimizer.bin"):
        state = torch.load(path, weights_only=True)["state"]
        if any(torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all()
               for s in state.values() for t in s.values()):
            bad.append(str(path.relative_to(out)))
    return bad


def leftovers(out: Path) -> list[str]:
    """Half-written files and directories (a `.tmp`, or the `.old` of a directory being replaced)."""
    return [str(p.relative_to(out)) for p in out.rglob("*") if p.name.endswith((".tmp", ".old"))]


def same_as_reference(out: Path, reference: Path) -> str | None:
    """What differs from the straight run, or None."""
    import torch
    from safetensors.torch import load_file

    lines, expected = strict_lines(out / "metrics.jsonl"), strict_lines(reference / "metrics.jsonl")
    if [m["step"] for m in lines] != list(range(1, STEPS + 1)):
        return f"metrics steps {[m['step'] for m in lines]}"
    for key in ("loss", "reward_mean", "grad_norm", "validation_accuracy"):
        if [m.get(key) for m in lines] != [m.get(key) for m in expected]:
            return f"metrics {key} differ"
    for name in ("model", "best-model"):
        got, want = load_file(out / name / "model.safetensors"), load_file(reference / name / "model.safetensors")
        if got.keys() != want.keys() or any(not torch.equal(got[k], want[k]) for k in want):
            return f"{name} weights differ"
    if (out / "best-model" / "best.json").read_text() != (reference / "best-model" / "best.json").read_text():
        return "best.json differs"
    if left := leftovers(out):
        return f"leftovers {left}"
    if bad := nonfinite_files(out):
        return f"non-finite {bad}"
    return None


class Tally:
    def __init__(self):
        self.groups: dict[str, list[int]] = {}
        self.failures: list[str] = []
        self.notes: dict[str, list[str]] = {}

    def add(self, group: str, case: str, problem: str | None) -> None:
        counts = self.groups.setdefault(group, [0, 0])
        counts[0] += 1
        counts[1] += problem is None
        if problem:
            self.failures.append(f"{group} / {case}: {problem}")
        print(f"  {group:7} {case:70} {'survived' if problem is None else 'FAILED: ' + problem}", flush=True)

    def note(self, group: str, text: str) -> None:
        self.notes.setdefault(group, []).append(text)

    def report(self) -> str:
        lines = ["", f"{'group':8}{'tried':>7}{'survived':>10}"]
        for group, (tried, survived) in self.groups.items():
            lines.append(f"{group:8}{tried:>7}{survived:>10}")
            lines += [f"         {text}" for text in self.notes.get(group, [])]
        lines += ["", *("FAILED " + f for f in self.failures)] if self.failures else []
        return "\n".join(lines)


# ----------------------------------------------------------------- the groups
def kill_group(ctx, tally: Tally, trials: int, rng) -> None:
    """Two SIGKILLs per trial, one during the run and one during its first resume: one at a random
    moment of training, the other while a file is being written (alternately first)."""
    half_written = kills = 0
    for trial in range(trials):
        out = ctx.work / f"kill-{trial}"
        seen = []
        for attempt, resume in enumerate(((), ("--resume",))):
            proc = launch(train_args(ctx.model, ctx.data, out, *resume))
            if (kill_while_writing(proc, out, rng) if (trial + attempt) % 2 else
                    signal_during_training(proc, out, signal.SIGKILL, ctx.step_seconds, rng)):
                proc.wait()
                kills += 1
                state = leftovers(out)
                text = (out / "metrics.jsonl").read_bytes() if (out / "metrics.jsonl").exists() else b""
                if state or (text and not text.endswith(b"\n")):
                    half_written += 1
                seen.append(f"killed at {sum(1 for _ in text.splitlines())} lines"
                            + (f" in {', '.join(Path(p).name for p in state)}" if state else ""))
            else:
                finish(proc)
                seen.append("finished before the kill")
        rc, _, err = run(train_args(ctx.model, ctx.data, out, "--resume"))
        problem = f"resume exit {rc}: {err.strip().splitlines()[-1:]}" if rc else same_as_reference(out, ctx.reference)
        tally.add("kill", f"trial {trial}: " + "; ".join(seen)[:70], problem)
        shutil.rmtree(out, ignore_errors=True)
    tally.note("kill", f"{kills} kill -9 moments; {half_written} of them left a half-written file or directory, "
                       f"or a cut metrics line")


def signal_group(ctx, tally: Tally, trials: int, rng) -> None:
    graceful = 0
    for trial in range(trials):
        signum = (signal.SIGTERM, signal.SIGINT)[trial % 2]
        out = ctx.work / f"signal-{trial}"
        proc = launch(train_args(ctx.model, ctx.data, out))
        sent = signal_during_training(proc, out, signum, ctx.step_seconds, rng)
        rc, _, err = finish(proc)
        status = 128 - rc if rc < 0 else rc  # what a shell or scheduler sees for a process a signal killed
        problem = None
        if sent and status not in (0, 128 + signum):
            problem = f"exit {rc} after {signal.Signals(signum).name}: {err.strip().splitlines()[-1:]}"
        graceful += rc == 128 + signum
        if problem is None:
            rc, _, err = run(train_args(ctx.model, ctx.data, out, "--resume"))
            problem = (f"resume exit {rc}: {err.strip().splitlines()[-1:]}" if rc
                       else same_as_reference(out, ctx.reference))
        tally.add("signal", f"{signal.Signals(signum).name} #{trial}" + ("" if sent else " (run finished first)"),
                  problem)
        shutil.rmtree(out, ignore_errors=True)
    tally.note("signal", f"{graceful} stopped gracefully (checkpoint, then exit 128 + signal)")


def _truncate(path: Path, keep: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * keep))


def _nan_weights(path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    save_file({n: torch.full_like(t, math.nan) for n, t in load_file(path).items()}, path, metadata={"format": "pt"})


def _no_sizes(step_dir: Path) -> None:  # a checkpoint of an older version, then damaged
    (step_dir / "trainer_state.json").write_text(json.dumps({"step": 4, "best_accuracy": 0.0}))
    _truncate(step_dir / "optimizer.bin")


UNUSABLE = "step-000004 is unusable"
DAMAGE = {  # case: (what resume must say, the damage done to (checkpoint step-4, run directory))
    "empty trainer_state.json": (UNUSABLE, lambda c, run: _truncate(c / "trainer_state.json", 0)),
    "missing trainer_state.json": (UNUSABLE, lambda c, run: (c / "trainer_state.json").unlink()),
    "trainer_state.json cut in half": (UNUSABLE, lambda c, run: _truncate(c / "trainer_state.json")),
    "truncated model.safetensors": (UNUSABLE, lambda c, run: _truncate(c / "model.safetensors")),
    "model.safetensors cut inside its header": (UNUSABLE, lambda c, run: _truncate(c / "model.safetensors", 0.001)),
    "truncated optimizer.bin": (UNUSABLE, lambda c, run: _truncate(c / "optimizer.bin")),
    "empty optimizer.bin": (UNUSABLE, lambda c, run: _truncate(c / "optimizer.bin", 0)),
    "truncated scheduler.bin": (UNUSABLE, lambda c, run: _truncate(c / "scheduler.bin")),
    "truncated random_states_0.pkl": (UNUSABLE, lambda c, run: _truncate(c / "random_states_0.pkl")),
    "NaN weights (older version)": (UNUSABLE, lambda c, run: _nan_weights(c / "model.safetensors")),
    "no sizes + truncated optimizer (older)": (UNUSABLE, lambda c, run: _no_sizes(c)),
    "half-written last metrics line": ("dropped 1 unreadable line", lambda c, run: (
        (run / "metrics.jsonl").open("a").write('{"step": 5, "lo'))),
    "half-written checkpoint step-000006.tmp": ("removed the half-written checkpoint step-000006.tmp", lambda c, run: (
        shutil.copytree(c, run / "checkpoints" / "step-000006.tmp"),
        _truncate(run / "checkpoints" / "step-000006.tmp" / "optimizer.bin"))),
    "best-model swap cut between its renames": ("restored", lambda c, run: (
        os.rename(run / "best-model", run / "best-model.old"), (run / "best-model.tmp").mkdir())),
}


def damage_group(ctx, tally: Tally) -> None:
    base = ctx.work / "four"  # the first 4 steps (constant lr: those of the reference), checkpoints at 2 and 4
    rc, _, err = run(train_args(ctx.model, ctx.data, base, "--max-steps", "4"))
    if rc:
        raise SystemExit(f"the 4-step run failed:\n{err}")
    shutil.rmtree(base / "model")
    for case, (said, damage) in DAMAGE.items():
        out = ctx.work / "damage"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(base, out)
        damage(out / "checkpoints" / "step-000004", out)
        rc, printed, err = run(train_args(ctx.model, ctx.data, out, "--resume"))
        problem = f"resume exit {rc}: {err.strip().splitlines()[-1:]}" if rc else same_as_reference(out, ctx.reference)
        if problem is None and said not in printed:
            problem = f"resume did not say {said!r}"
        tally.add("damage", case, problem)


def nan_group(ctx, tally: Tally) -> None:
    cases = [  # (case, extra flags, poisoned steps, command, whether the run should finish)
        ("NaN loss at step 3", (), "3", "train", True),
        ("NaN loss at steps 3 and 5", (), "3, 5", "train", True),
        ("NaN loss at steps 3, 4, 5", (), "3, 4, 5", "train", False),
        ("NaN loss at steps 3-6, --max-nonfinite-steps 5", ("--max-nonfinite-steps", "5"), "3, 4, 5, 6", "train",
         True),
        ("NaN loss at steps 2-4, clipping off", ("--max-grad-norm", "0"), "2, 3, 4", "train", False),
        ("train --lr 1000", ("--lr", "1000"), "", "train", False),
        ("train --lr 1000 --max-grad-norm 0", ("--lr", "1000", "--max-grad-norm", "0"), "", "train", False),
        ("sft --lr 1000", ("--lr", "1000"), "", "sft", False),
    ]
    for case, extra, steps, command, finishes in cases:
        out = ctx.work / "nan"
        shutil.rmtree(out, ignore_errors=True)
        args = train_args(ctx.model, ctx.data, out, *extra, command=command)
        rc, _, err = run(args, POISON % steps if steps else None)
        last = err.strip().splitlines()[-1] if err.strip() else ""
        problem = None
        if finishes and rc:
            problem = f"exit {rc}: {last}"
        elif not finishes and (rc == 0 or "Traceback" in err or "in a row had a NaN" not in last):
            problem = f"exit {rc}, last line {last!r}"
        problem = problem or _nan_checks(out)
        if problem is None and not finishes:  # the stop must not block a resume without the fault
            rc, printed, err = run(_without_fault(args) + ["--resume"])
            last = err.strip().splitlines()[-1] if err.strip() else ""
            if "resumed from" not in printed or "Traceback" in err or (rc and "in a row had a NaN" not in last):
                problem = f"resume exit {rc}: {last}"  # (a diverged model may stop again, but it must load)
            problem = problem or _nan_checks(out)
        tally.add("nan", case, problem)


def _without_fault(args: list[str]) -> list[str]:
    """The same command with a sane learning rate (flags given later win)."""
    return [*args, "--lr", "1e-3"]


def _nan_checks(out: Path) -> str | None:
    try:
        strict_lines(out / "metrics.jsonl")
    except ValueError as error:
        return str(error)
    if bad := nonfinite_files(out):
        return f"non-finite tensors written: {bad}"
    best = out / "best-model" / "best.json"
    if (out / "best-model").exists():
        step = json.loads(best.read_text())["step"]
        if not (out / "evaluations" / f"validation-step-{step:06d}.json").exists():
            return f"best-model names step {step}, which has no evaluation"
    return None


def disk_group(ctx, tally: Tally, sizes: int) -> None:
    mount = ctx.work / "disk"
    mount.mkdir()
    peak = ctx.peak_bytes
    # A few sizes that fill up on config.yaml, a metrics line or an evaluation; the rest spread
    # over the run's peak, filling up on a model or a checkpoint.
    tiny = [4, 12, 24, 48][: sizes // 3]
    spread = [int(peak / 1024 * (0.02 + 0.96 * i / max(1, sizes - len(tiny) - 1))) for i in range(sizes - len(tiny))]
    clear = finished = 0
    for size_kb in tiny + spread:
        fraction = size_kb * 1024 / peak
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)], check=True,
                           capture_output=True)
        except (subprocess.CalledProcessError, FileNotFoundError) as error:
            tally.note("disk", f"skipped: cannot mount a tmpfs ({getattr(error, 'stderr', b'') or error!s})")
            return
        try:
            out = mount / "run"
            rc, _, err = run(train_args(ctx.model, ctx.data, out))
            last = err.strip().splitlines()[-1] if err.strip() else ""
            outcome = f"stopped at {Path(last.split('writing ')[-1]).name}" if rc else "finished"
            problem = None
            if rc == 0:
                finished += 1
            elif "Traceback" in err or not last.startswith("latro train: no space left on device while writing "):
                problem = f"exit {rc}, last line {last!r}"
            else:
                clear += 1
            if problem is None:
                subprocess.run(["mount", "-o", f"remount,size={4 * peak // 1024 + 1024}k", str(mount)], check=True)
                rc, _, err = run(train_args(ctx.model, ctx.data, out, "--resume"))
                problem = f"resume exit {rc}: {err.strip().splitlines()[-1:]}" if rc \
                    else same_as_reference(out, ctx.reference)
            tally.add("disk", f"tmpfs of {size_kb} KiB ({fraction:.1%} of the peak): {outcome}"[:70], problem)
        finally:
            subprocess.run(["umount", str(mount)], check=False)
    tally.note("disk", f"{clear} stopped with the one-line message, {finished} had room to finish")


# ----------------------------------------------------------------- main
class Context:
    pass


def peak_usage(proc, out: Path) -> int:
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, sum(p.stat().st_size for p in out.rglob("*") if p.is_file()))
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", default="kill,signal,damage,nan,disk")
    parser.add_argument("--kills", type=int, default=15, help="Kill trials (two SIGKILLs each).")
    parser.add_argument("--signals", type=int, default=10, help="SIGTERM / SIGINT trials.")
    parser.add_argument("--disk-sizes", type=int, default=10, help="tmpfs sizes tried.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="Where to run (default: a new temporary directory, removed after).")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    ctx = Context()
    ctx.work = Path(args.workdir or tempfile.mkdtemp(prefix="latro-faults-"))
    ctx.work.mkdir(parents=True, exist_ok=True)
    try:
        ctx.model, ctx.data = build_inputs(ctx.work)
        ctx.reference = ctx.work / "reference"
        started = time.perf_counter()
        proc = launch(train_args(ctx.model, ctx.data, ctx.reference))
        while not training_began(ctx.reference, None):
            time.sleep(0.01)
        began = time.perf_counter()
        ctx.peak_bytes = peak_usage(proc, ctx.reference)
        rc, _, err = finish(proc)
        if rc:
            raise SystemExit(f"the reference run failed:\n{err}")
        training_seconds = time.perf_counter() - began
        ctx.step_seconds = training_seconds / STEPS
        print(f"reference run: {time.perf_counter() - started:.1f} s, of which training {training_seconds:.1f} s; "
              f"peak size of the run directory {ctx.peak_bytes / 2**20:.1f} MiB", flush=True)
        tally = Tally()
        groups = args.groups.split(",")
        if "kill" in groups:
            kill_group(ctx, tally, args.kills, rng)
        if "signal" in groups:
            signal_group(ctx, tally, args.signals, rng)
        if "damage" in groups:
            damage_group(ctx, tally)
        if "nan" in groups:
            nan_group(ctx, tally)
        if "disk" in groups:
            disk_group(ctx, tally, args.disk_sizes)
        print(tally.report())
    finally:
        if not args.workdir:
            shutil.rmtree(ctx.work, ignore_errors=True)


if __name__ == "__main__":
    main()
