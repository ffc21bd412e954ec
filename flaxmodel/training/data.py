"""Labeled text for training and evaluation: CSV, JSONL, Parquet and TweetEval files.

:func:`read_labeled` reads every file a pattern matches into one
:class:`LabeledData` (texts, integer label ids, label names).  Tabular formats
take the text and label from ``text_field`` / ``label_field``; TweetEval keeps
texts and labels in parallel ``<split>_text.txt`` / ``<split>_labels.txt`` files
with the names in ``mapping.txt``.  Labels may be given as ids or as names: with
known label names both map onto them; otherwise numeric labels name themselves
``LABEL_<id>`` and textual ones are sorted.  Training data is curated, so a bad
row (missing text, unknown label) stops the read with its file and row named
rather than being skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import gzip
import io
import json
import os
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flaxmodel.ckpts import files
from flaxmodel.errors import DataError
from flaxmodel.inference.metrics import is_label_id, parse_label

# Formats of labeled training and validation data.  The pipelines read their
# own, unlabeled input formats (plain text lines among them, TweetEval not), so
# this tuple is named for what it covers rather than shared with them.
LABELED_FORMATS = ("auto", "csv", "jsonl", "parquet", "tweeteval")
TWEETEVAL_TEXT = "_text.txt"
TWEETEVAL_LABELS = "_labels.txt"
TWEETEVAL_MAPPING = "mapping.txt"
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
# How many offending rows an error message quotes.
_SHOWN_PROBLEMS = 5


@dataclasses.dataclass(frozen=True)
class LabeledData:
    """Texts and their integer labels, ``label_ids[i]`` naming ``labels[label_ids[i]]``."""

    texts: list[str]
    label_ids: np.ndarray
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        """Rows per label name."""
        found = np.bincount(self.label_ids, minlength=len(self.labels))
        return {name: int(n) for name, n in zip(self.labels, found)}


def expand(pattern: str) -> list[str]:
    """Files a path, glob or comma-separated list of them matches, sorted."""
    matched: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        if not part:
            continue
        if files.is_remote(part):
            # Imported only here, as flaxmodel.ckpts.files does: Beam is slow to import.
            from apache_beam.io.filesystems import FileSystems

            found = [m.path for r in FileSystems.match([part]) for m in r.metadata_list]
        else:
            found = glob.glob(part) if glob.has_magic(part) else ([part] if os.path.exists(part) else [])
        if not found:
            raise DataError(f"{part}: no such file")
        matched.extend(sorted(found))
    if not matched:
        raise DataError(f"{pattern!r} names no input file")
    return matched


def detect_format(path: str) -> str:
    """The labeled format of ``path`` from its name (``.gz`` looked through); raises DataError if unknown."""
    if path.endswith(TWEETEVAL_TEXT):
        return "tweeteval"
    stem = path[: -len(".gz")] if path.endswith(".gz") else path
    ext = os.path.splitext(stem)[1].lower()
    if ext not in _EXTENSIONS:
        known = ", ".join(LABELED_FORMATS[1:])
        raise DataError(f"{path}: cannot tell the format from the extension; pass --format ({known})")
    return _EXTENSIONS[ext]


def read_text(path: str) -> str:
    data = files.read_bytes(path)
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from None


def _rows_csv(path: str) -> Iterable[tuple[int, dict[str, Any]]]:
    # Row numbers count records (header is row 0); quoted texts may span lines.
    return enumerate(csv.DictReader(io.StringIO(read_text(path), newline="")), start=1)


def rows_jsonl(path: str) -> Iterable[tuple[int, Any]]:
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: not valid JSON ({err})") from None


def rows_parquet(path: str, fields: Sequence[str]) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        table = pq.read_table(pa.BufferReader(files.read_bytes(path)))
    except pa.ArrowInvalid as err:
        raise DataError(f"{path}: not a Parquet file ({err})") from None
    missing = [f for f in fields if f not in table.column_names]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; columns: {table.column_names}")
    columns = {f: table.column(f).to_pylist() for f in fields}
    return ((i + 1, {f: columns[f][i] for f in fields}) for i in range(table.num_rows))


def read_tweeteval(path: str) -> tuple[list[str], list[str], tuple[str, ...] | None]:
    labels_path = path[: -len(TWEETEVAL_TEXT)] + TWEETEVAL_LABELS
    if not files.exists(labels_path):
        raise DataError(f"{path}: TweetEval texts need their labels in {labels_path}")
    texts = read_text(path).split("\n")
    raw = read_text(labels_path).split("\n")
    # A trailing newline leaves one empty element; an empty tweet in the middle stays a row.
    texts = texts[:-1] if texts and texts[-1] == "" else texts
    raw = [r.strip() for r in (raw[:-1] if raw and raw[-1] == "" else raw)]
    if len(texts) != len(raw):
        raise DataError(f"{path}: {len(texts)} texts but {labels_path} has {len(raw)} labels")
    mapping_path = files.join(os.path.dirname(path), TWEETEVAL_MAPPING)
    names = None
    if files.exists(mapping_path):
        pairs = [line.split("\t") for line in read_text(mapping_path).splitlines() if line.strip()]
        try:
            by_id = {int(i): name.strip() for i, name in pairs}
        except ValueError:
            raise DataError(f"{mapping_path}: expected '<id>\\t<name>' lines") from None
        names = tuple(by_id[i] for i in sorted(by_id))
    return texts, raw, names


def _label_ids(
    raw: Sequence[Any], where: Sequence[str], labels: tuple[str, ...] | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    if labels is None:
        if all(is_label_id(v) for v in raw):
            top = max((int(v) for v in raw), default=-1)
            labels = tuple(f"LABEL_{i}" for i in range(top + 1))
        else:
            labels = tuple(sorted({str(v) for v in raw if not is_label_id(v)}))
    ids = np.empty(len(raw), dtype=np.int32)
    problems = []
    for i, value in enumerate(raw):
        found = parse_label(value, labels)
        if found is None:
            problems.append(f"{where[i]}: label {value!r}")
        else:
            ids[i] = found
    if problems:
        raise DataError(
            f"{len(problems)} rows have labels outside {list(labels)} (ids 0..{len(labels) - 1} or names): "
            + "; ".join(problems[:_SHOWN_PROBLEMS])
        )
    return ids, labels


def read_labeled(
    pattern: str,
    *,
    text_field: str = "text",
    label_field: str = "label",
    labels: Sequence[str] | None = None,
    format: str = "auto",
) -> LabeledData:
    """Every labeled row of the files ``pattern`` matches, in file then row order.

    Args:
      pattern: a path, glob or comma-separated list of them (local or on a Beam filesystem).
      text_field, label_field: where CSV, JSONL and Parquet rows keep the text and the label.
      labels: the label names in id order; default: from TweetEval's ``mapping.txt``,
        else ``LABEL_<id>`` for numeric labels or the sorted names.
      format: one of :data:`LABELED_FORMATS`; ``auto`` goes by each file's extension.

    Returns:
      The :class:`LabeledData`, ``label_ids`` int32 ``[n]``.

    Raises:
      DataError: naming the file and rows that cannot be read.
    """
    if format not in LABELED_FORMATS:
        raise DataError(f"format must be one of {LABELED_FORMATS}, got {format!r}")
    texts: list[str] = []
    raw: list[Any] = []
    where: list[str] = []
    problems: list[str] = []
    found_names: tuple[str, ...] | None = None
    for path in expand(pattern):
        kind = detect_format(path) if format == "auto" else format
        if kind == "tweeteval":
            file_texts, file_labels, names = read_tweeteval(path)
            found_names = found_names or names
            texts.extend(file_texts)
            raw.extend(file_labels)
            where.extend(f"{path}:{i + 1}" for i in range(len(file_texts)))
            continue
        rows = {
            "csv": lambda: _rows_csv(path),
            "jsonl": lambda: rows_jsonl(path),
            "parquet": lambda: rows_parquet(path, (text_field, label_field)),
        }[kind]()
        for number, row in rows:
            text = row.get(text_field) if isinstance(row, dict) else None
            label = row.get(label_field) if isinstance(row, dict) else None
            if not isinstance(text, str) or label is None or label == "":
                problems.append(f"{path}:{number}: missing {text_field!r} text or {label_field!r} label")
                continue
            texts.append(text)
            raw.append(label)
            where.append(f"{path}:{number}")
    if problems:
        raise DataError(f"{len(problems)} unusable rows: " + "; ".join(problems[:_SHOWN_PROBLEMS]))
    if not texts:
        raise DataError(f"{pattern}: no labeled rows")
    ids, names = _label_ids(raw, where, tuple(labels) if labels is not None else found_names)
    return LabeledData(texts=texts, label_ids=ids, labels=names)
