"""Rows of a dataset, loaded by `datasets.load_dataset`, each with the place it came from.

A source is a hub id (with an optional config), a local file (JSON, JSONL, CSV, Parquet, Arrow)
or a directory of such files, split by their names as `load_dataset` splits them (train.jsonl,
test.csv, ...). Rows keep their place ("file:line", or "file: row N" where a format has no
lines) so that the task's validation pass can name the row a user has to fix.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from latro.tasks.base import DataError, _finite, _no_constant, _Rejected, _unique_keys, read_jsonl

FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


@dataclass
class Rows:
    """One split: its records as `datasets` loaded them and, for each, where it is."""

    records: list[dict]
    places: list[str]


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _load(builder: str, path: Path, **kwargs) -> list[dict]:
    from datasets import load_dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # one bar per small file would drown the run's own output
    try:
        return [dict(row) for row in load_dataset(builder, data_files=str(path), split="train", **kwargs)]
    except Exception as err:  # pyarrow and pandas raise their own types; the file is what to name
        cause = err.__cause__ or err
        raise DataError(f"{path}: cannot load as {builder} ({type(cause).__name__}: {_one_line(cause)})") from err


def _json_places(path: Path) -> list[str]:
    """Where each record of a JSON or JSONL file is, after checking what `datasets` cannot see.

    pyarrow's JSON reader turns NaN and Infinity into null (a NaN answer would read as a missing
    one) and reports a repeated key or a syntax error with a row number counted within its block,
    not the file's line; so JSON files are checked line by line here first. The rows themselves
    are still those `load_dataset` returns."""
    text = path.read_bytes()
    if not text.lstrip().startswith(b"["):
        return [f"{path}:{number}" for number, _ in read_jsonl(path)]
    try:  # a JSON array: one document, so its records are numbered, not lined
        records = json.loads(text, object_pairs_hook=_unique_keys, parse_float=_finite, parse_constant=_no_constant)
    except _Rejected as err:
        raise DataError(f"{path}: {err}") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from err
    except ValueError as err:
        raise DataError(f"{path}: malformed JSON ({err})") from err
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(f"{path}: row {n}: expected a JSON object, got {type(record).__name__}")
    return [f"{path}: row {n}" for n in range(1, len(records) + 1)]


def _csv_layout(path: Path) -> tuple[list[str], list[str]]:
    """(column names, the line each record starts on): a quoted cell may span several lines."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header, starts, end = next(reader, []), [], 1
        for row in reader:
            if row:  # pandas skips blank lines too
                starts.append(f"{path}:{end + 1}")
            end = reader.line_num
    return header, starts


def read_file(path: str | Path) -> Rows:
    """Every record of one local file, loaded by `datasets`; DataError naming the file if it cannot be."""
    path = Path(path)
    builder = FORMATS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"{path}: unknown data format; expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: cannot read file (No such file or directory)")
    kwargs = {}
    if builder == "json":
        places = _json_places(path)
    elif builder == "csv":
        from datasets import Features, Value

        header, places = _csv_layout(path)
        # Every cell as text, so an answer "007" or a label "1" reaches the task as written.
        kwargs["features"] = Features({name: Value("string") for name in header}) if header else None
    records = _load(builder, path, **kwargs) if path.stat().st_size else []
    if not records:
        raise DataError(f"{path}: no records (empty file)")
    if builder in ("parquet", "arrow"):
        places = [f"{path}: row {n}" for n in range(1, len(records) + 1)]
    if len(places) != len(records):
        raise DataError(f"{path}: {len(records)} records were loaded but {len(places)} were found in the file")
    return Rows(records, places)


def split_files(directory: Path) -> dict[str, list[Path]]:
    """The data files of each split in `directory`, as `load_dataset(directory)` would split them."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        found = DataFilesDict.from_patterns(get_data_patterns(str(directory)), base_path=str(directory))
    except Exception as err:  # EmptyDatasetError, FileNotFoundError
        raise DataError(f"{directory}: no data files found ({err})") from err
    return {str(split): sorted(Path(f) for f in files if Path(f).suffix.lower() in FORMATS)
            for split, files in found.items()}


def read_hub(name: str, config: str | None) -> dict[str, Rows]:
    """Every split of a hub dataset; rows are placed as "name[split]: row N"."""
    from datasets import load_dataset

    try:
        splits = load_dataset(name, config)
    except Exception as err:  # offline, unknown id, missing config: the message says which
        raise DataError(f"{name}: cannot load the dataset ({type(err).__name__}: {_one_line(err)})") from err
    return {split: Rows([dict(r) for r in rows], [f"{name}[{split}]: row {n}" for n in range(1, len(rows) + 1)])
            for split, rows in splits.items()}


def read_source(source: str, config: str | None = None) -> dict[str, Rows]:
    """Every split of a dataset: a local file (its one split is "train"), a directory or a hub id."""
    path = Path(source)
    if path.is_file() or path.suffix.lower() in FORMATS:
        return {"train": read_file(path)}
    if path.is_dir():
        splits = {}
        for split, files in split_files(path).items():
            parts = [read_file(f) for f in files]
            splits[split] = Rows([r for p in parts for r in p.records], [w for p in parts for w in p.places])
        return splits
    return read_hub(source, config)
