"""Run files that survive a kill at any moment, a full disk and a damaged checkpoint.

Every file of a run directory is either replaced whole or appended to by whole lines: a file
or directory is written under a temporary name (`.tmp`), synced to disk and renamed into place,
rename being atomic on POSIX filesystems; an interrupted append is cut back to its last full
line. A checkpoint directory lists its files' sizes in its trainer_state.json, written last,
so that resume can tell a complete checkpoint from a damaged one and fall back to an older one.

Also here: how a run ends early (`RunStopped`, `NonFiniteError`, `DiskFullError`), so that the
command line can turn each into its exit code without importing the trainer.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

CHECKPOINT_NAME = re.compile(r"step-(\d+)")
STATE_FILE = "trainer_state.json"
RUN_FILES = ("checkpoints", "metrics.jsonl", "model", "best-model")  # what makes a directory hold a run


class RunStopped(BaseException):
    """A signal stopped the run (after its checkpoint, when `saved`). A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int, step: int, saved: bool = True):
        self.signum, self.step, self.saved = signum, step, saved
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        when = "nothing to save yet" if step == 0 else "checkpoint saved" if saved else "the step in flight abandoned"
        super().__init__(f"stopped by {name} after step {step} ({when}): continue with --resume")


class RunError(RuntimeError):
    """The run cannot go on; the message says why and what to do."""


class NonFiniteError(RunError):
    """Going on would apply or save a NaN or an infinity."""


class DiskFullError(OSError):
    def __init__(self, path):
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def __str__(self):
        return f"no space left on device while writing {self.filename}"


def _disk_full(error: BaseException, path: Path) -> bool:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    if not isinstance(error, Exception):
        return False
    if "(os error 28)" in str(error) or os.strerror(errno.ENOSPC) in str(error):  # safetensors (Rust) says so
        return True
    # torch.save reports a full disk as "inline_container.cc: unexpected pos", with no errno: the
    # filesystem, which the failed write has filled to its last block, tells instead.
    existing = next(p for p in (path, *path.parents) if p.exists())
    return shutil.disk_usage(existing).free < 64 * 1024


@contextmanager
def writing(path: Path):
    """Turns a write that failed on a full disk into DiskFullError naming `path`."""
    try:
        yield
    except DiskFullError:
        raise
    except BaseException as error:
        if _disk_full(error, Path(path)):
            raise DiskFullError(path) from error
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: str | Path, write) -> None:
    """Calls write(temporary path), then puts the synced result at `path` in one rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with writing(path):
            write(tmp)
            _fsync(tmp)
            os.replace(tmp, path)
            _fsync(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    replace_file(path, lambda tmp: tmp.write_text(text))


def finite_json(value):
    """`value` with every NaN and infinity replaced by None, so that it is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def dumps(value, **kw) -> str:
    return json.dumps(finite_json(value), allow_nan=False, **kw)


def append_line(path: str | Path, line: str) -> None:
    """Appends one line and syncs it; a failed write is cut back, leaving whole lines only."""
    data = (line + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            with writing(path):
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def read_lines(path: Path) -> tuple[list[dict], int]:
    """The JSON records of a .jsonl file, and how many lines were unreadable (a line cut by a
    kill or a full disk in older runs)."""
    records, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            bad += bool(line.strip())
    return records, bad


# ----------------------------------------------------------------- directories
def _swap_in(tmp: Path, path: Path) -> None:
    """Puts the complete directory `tmp` at `path`; the previous one waits in `.old` until then
    (see `restore_dir`)."""
    old = path.with_name(path.name + ".old")
    for folder, _, names in os.walk(tmp):
        for name in names:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def replace_dir(path: str | Path):
    """Yields an empty temporary directory to write; on success it replaces `path` whole."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with writing(tmp):
            yield tmp
            _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def restore_dir(path: Path) -> str | None:
    """Undoes what a kill in the middle of `replace_dir` left; says what it did, if anything."""
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    said = None
    if old.exists() and not path.exists():
        os.replace(old, path)
        said = f"restored {path} from {old.name}"
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)
            said = said or f"removed the half-written {leftover}"
    return said


# ----------------------------------------------------------------- checkpoints
def run_files(run_dir: Path) -> list[str]:
    """The files of a run that `run_dir` holds (a new run there would mix with them)."""
    return [name for name in RUN_FILES if (Path(run_dir) / name).exists()]


def checkpoints(root: Path) -> list[Path]:
    """The complete-looking checkpoints under `root`, oldest first."""
    found = [p for p in root.glob("step-*") if CHECKPOINT_NAME.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(CHECKPOINT_NAME.fullmatch(p.name).group(1)))


def clean_half_written(root: Path) -> list[str]:
    """Removes checkpoint directories a kill or a full disk left half-written."""
    removed = []
    for leftover in sorted(root.glob("step-*.tmp")) + sorted(root.glob("step-*.old")):
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover.name)
    return removed


@contextmanager
def writing_checkpoint(root: Path, step: int, state: dict, is_main: bool):
    """Yields the temporary directory of checkpoint `step` to save into; then (main process)
    adds trainer_state.json with the size of every file and renames it into place."""
    path = root / f"step-{step:06d}"
    tmp = path.with_name(path.name + ".tmp")
    try:
        with writing(tmp):
            yield tmp
            if is_main:
                files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
                (tmp / STATE_FILE).write_text(dumps({**state, "files": files}))
                _swap_in(tmp, path)
    except BaseException:
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def prune(root: Path, keep: int) -> None:
    for old in checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def read_state(path: Path) -> dict:
    """trainer_state.json of a checkpoint, after checking that every file it lists is there in
    full; raises ValueError saying what is wrong."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except FileNotFoundError:
        raise ValueError(f"no {STATE_FILE}") from None
    except ValueError:
        raise ValueError(f"{STATE_FILE} is not valid JSON") from None
    step = state.get("step") if isinstance(state, dict) else None
    if type(step) is not int:
        raise ValueError(f"{STATE_FILE} holds no step")
    for name, size in state.get("files", {}).items():  # absent in checkpoints of older versions
        actual = (path / name).stat().st_size if (path / name).exists() else None
        if actual != size:
            raise ValueError(f"{name} is missing" if actual is None else f"{name} has {actual} of {size} bytes")
    return state


def set_aside(path: Path) -> Path:
    """Renames a damaged checkpoint out of resume's way, keeping it for inspection."""
    aside = path.with_name(path.name + ".damaged")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(path, aside)
    return aside
