"""Labeled text for training and evaluation: CSV, TSV, JSONL, Parquet and TweetEval files.

:func:`read_labeled` reads every file a pattern matches into one
:class:`LabeledData` (texts, integer label ids, label names).  Tabular formats
are read with the project's one format layer (:mod:`flaxmodel.records`, the
parsers the moderation and evaluation jobs read with), taking the text and the
label from ``text_field`` / ``label_field``; TweetEval keeps texts and labels in
parallel ``<split>_text.txt`` / ``<split>_labels.txt`` files with the names in
``mapping.txt``.  Labels may be given as ids or as names: with known label names
both map onto them; otherwise numeric labels name themselves ``LABEL_<id>`` and
textual ones are sorted.  Training data is curated, so a row the jobs would
dead-letter (missing text, bad JSON, ...) or an unknown label stops the read
with its file and line named rather than being skipped.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import io
import logging
import os
from typing import Any, Sequence

import numpy as np

import flaxmodel.records as R
from flaxmodel.ckpts import files
from flaxmodel.errors import DataError
from flaxmodel.inference.metrics import is_label_id, parse_label

TABLE_FORMATS = (R.CSV, R.TSV, R.JSONL, R.PARQUET)
LABELED_FORMATS = ("auto", *TABLE_FORMATS, "tweeteval")
TWEETEVAL_TEXT = "_text.txt"
TWEETEVAL_LABELS = "_labels.txt"
TWEETEVAL_MAPPING = "mapping.txt"
# Dead-letter reasons of a row without a usable text: a mixture source skips such rows (its files hold
# a few, e.g. deleted posts); data read with read_labeled must have none.
NO_TEXT = (R.MISSING_TEXT, R.NULL_TEXT, R.NON_STRING_TEXT, R.EMPTY_TEXT)
# How many offending rows an error message quotes.
_SHOWN_PROBLEMS = 5

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LabeledData:
    """Texts and their integer labels, ``label_ids[i]`` naming ``labels[label_ids[i]]``; ``fields`` the
    other columns asked for, row for row (None where a row has none)."""

    texts: list[str]
    label_ids: np.ndarray
    labels: tuple[str, ...]
    fields: dict[str, list[str | None]] = dataclasses.field(default_factory=dict)

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
    kind = R.detect_format(path)
    if kind not in TABLE_FORMATS:
        known = ", ".join(LABELED_FORMATS[1:])
        raise DataError(f"{path}: cannot tell the format from the extension; pass --format ({known})")
    return kind


def read_bytes(path: str) -> bytes:
    """A file's bytes, gunzipped for ``.gz``."""
    data = files.read_bytes(path)
    return gzip.decompress(data) if path.endswith(".gz") else data


def read_text(path: str) -> str:
    try:
        return read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from None


def _where(item: R.Record | R.DeadLetter) -> str:
    """``path:line`` (1-based: the line a record starts on; a Parquet file's row)."""
    return f"{item.source}:{item.position + 1}"


def read_records(path: str, kind: str, text_field: str, fields: Sequence[str]) -> list[R.Record]:
    """The records of one labeled table, exactly those the jobs would label in it.

    A row without a usable text (:data:`NO_TEXT`: the jobs dead-letter it) holds nothing to learn
    or score, so it is skipped with a warning; any other row the jobs would dead-letter (bad JSON,
    a broken CSV row, bytes that are not UTF-8) refuses the file.

    Args:
      path: the file (local or on a Beam filesystem; ``.gz`` decompressed).
      kind: one of :data:`TABLE_FORMATS`.
      text_field: the field or column of the text.
      fields: the other fields each record keeps (as strings, or None where absent).

    Returns:
      The records, in file order.

    Raises:
      DataError: naming the lines that cannot be read, or saying that no row has a text.
    """
    keep = tuple(dict.fromkeys(f for f in fields if f and f != text_field))
    spec = R.FieldSpec(text_field=text_field, keep_fields=keep)
    records, no_text, problems = [], [], []
    for item in R.parse(kind, io.BytesIO(read_bytes(path)), path, spec):
        if isinstance(item, R.Record):
            records.append(item)
        elif item.reason in NO_TEXT:
            no_text.append(f"{_where(item)}: {item.detail}")
        else:
            problems.append(f"{_where(item)}: {item.reason} ({item.detail})")
    if problems:
        raise DataError(f"{len(problems)} unusable rows: " + "; ".join(problems[:_SHOWN_PROBLEMS]))
    if no_text and not records:
        raise DataError(f"{path}: no row has a usable {text_field!r} text (e.g. {no_text[0]}); check the text field")
    _warn_skipped(path, text_field, no_text)
    return records


def _warn_skipped(path: str, text_field: str, skipped: Sequence[str]) -> None:
    if skipped:
        log.warning(
            "%s: skipped %d rows without a usable %r text, as the jobs dead-letter them (%s)",
            path, len(skipped), text_field, "; ".join(skipped[:_SHOWN_PROBLEMS]),
        )  # fmt: skip


def without_blank_texts(path: str, texts: Sequence[str]) -> list[int]:
    """Indices of a text file's texts that are not blank: the jobs dead-letter blank ones (skipped, warned)."""
    blank = [i for i, text in enumerate(texts) if not text.strip()]
    _warn_skipped(path, "text", [f"{path}:{i + 1}: empty or whitespace-only text" for i in blank])
    skip = set(blank)
    return [i for i in range(len(texts)) if i not in skip]


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
    extra_fields: Sequence[str] = (),
) -> LabeledData:
    """Every labeled row of the files ``pattern`` matches, in file then row order.

    Args:
      pattern: a path, glob or comma-separated list of them (local or on a Beam filesystem).
      text_field, label_field: where CSV, JSONL and Parquet rows keep the text and the label.
      labels: the label names in id order; default: from TweetEval's ``mapping.txt``,
        else ``LABEL_<id>`` for numeric labels or the sorted names.
      format: one of :data:`LABELED_FORMATS`; ``auto`` goes by each file's extension.
      extra_fields: more columns to keep per row, in the same read (TweetEval files have none).

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
    extra: dict[str, list[str | None]] = {field: [] for field in extra_fields}
    for path in expand(pattern):
        kind = detect_format(path) if format == "auto" else format
        if kind == "tweeteval":
            file_texts, file_labels, names = read_tweeteval(path)
            found_names = found_names or names
            for i in without_blank_texts(path, file_texts):
                texts.append(file_texts[i])
                raw.append(file_labels[i])
                where.append(f"{path}:{i + 1}")
                for values in extra.values():
                    values.append(None)
            continue
        for record in read_records(path, kind, text_field, (label_field, *extra_fields)):
            label = record.fields[label_field]
            if label is None or label == "":
                problems.append(f"{_where(record)}: missing {label_field!r} label")
                continue
            texts.append(record.text)
            raw.append(label)
            where.append(_where(record))
            for field, values in extra.items():
                values.append(record.fields[field])
    if problems:
        raise DataError(f"{len(problems)} unusable rows: " + "; ".join(problems[:_SHOWN_PROBLEMS]))
    if not texts:
        raise DataError(f"{pattern}: no labeled rows")
    ids, names = _label_ids(raw, where, tuple(labels) if labels is not None else found_names)
    return LabeledData(texts=texts, label_ids=ids, labels=names, fields=extra)
