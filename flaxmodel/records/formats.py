"""Parsing input shards into records: plain text, JSONL, CSV and Parquet.

Every parser takes the file's raw bytes (lines, or the open file for Parquet)
and decodes them itself, so a bad byte, line or row becomes a dead-letter row
and never fails the job.  Each yields :class:`~flaxmodel.records.records.Record` or
:class:`~flaxmodel.records.records.DeadLetter` items in file order; ``position`` is the
0-based line where the record starts (text, JSONL, CSV, header included) or the
0-based row (Parquet).

* text: every line is a record (a blank line is an ``empty_text`` dead letter).
* JSONL: one JSON object per line; blank lines hold no record and are skipped.
* CSV (and TSV): header row, then rows; quoted fields may span lines.  Lines are decoded
  with ``surrogateescape`` so that invalid UTF-8 in one row dead-letters only
  that row; blank lines are skipped.
* Parquet: the text, id and kept columns are read in record batches.

The default record id is ``<file path>:<position>``, stable across runs.  The
pipelines read through :mod:`flaxmodel.records.blocks`, which packs these records
into blocks and decodes clean JSONL and Parquet blocks with pyarrow in one call;
training reads the same records (:mod:`flaxmodel.training.data`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from typing import BinaryIO, Callable, Iterable, Iterator, Mapping

import pyarrow as pa

import flaxmodel.records.records as R

TEXT, JSONL, CSV, TSV, PARQUET = "text", "jsonl", "csv", "tsv", "parquet"
FORMATS = (TEXT, JSONL, CSV, TSV, PARQUET)
EXTENSIONS = {
    ".txt": TEXT,
    ".text": TEXT,
    ".jsonl": JSONL,
    ".ndjson": JSONL,
    ".json": JSONL,
    ".csv": CSV,
    ".tsv": TSV,
    ".parquet": PARQUET,
    ".pq": PARQUET,
}
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".deflate", ".zst", ".zstd", ".lzma", ".xz")
BOM = b"\xef\xbb\xbf"
_PARQUET_BATCH_ROWS = 4096
# Python's csv refuses fields over 131,072 characters, which dead-lettered long posts that JSONL and
# Parquet label.  The cap stays (an unterminated quote would otherwise pull the rest of a shard into one
# field), raised to what a record's windows can use many times over; a longer field is an invalid_csv
# dead letter saying so.
CSV_FIELD_LIMIT = 16 * 2**20


Item = R.Record | R.DeadLetter


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """Which fields hold the text, the id and the passthrough values."""

    text_field: str = "text"
    id_field: str | None = None
    keep_fields: tuple[str, ...] = ()
    max_payload_bytes: int = 1024


def detect_format(path: str) -> str | None:
    """The format implied by a path's extension (compression suffix ignored), or None."""
    name = path.rsplit("/", 1)[-1].lower()
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    dot = name.rfind(".")
    return EXTENSIONS.get(name[dot:]) if dot >= 0 else None


def default_id(source: str, position: int) -> str:
    return f"{source}:{position}"


def as_field_string(value: object) -> str | None:
    """Passthrough values are written as strings: JSON for numbers, booleans and containers."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float, list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _encodable(text: str) -> bool:
    """False for strings holding lone surrogates (undecodable bytes or JSON ``\\ud800`` escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def _numbered_lines(lines: Iterable[bytes], start: int = 0) -> Iterator[tuple[int, bytes]]:
    """``(position, line)`` from line ``start`` on, without line endings or the file's leading byte-order mark."""
    for position, raw in enumerate(lines, start):
        line = _strip_eol(raw)
        if position == 0 and line.startswith(BOM):
            line = line[len(BOM) :]
        yield position, line


class RecordBuilder:
    """Checks a record's fields and turns it into a Record or a dead letter."""

    def __init__(self, source: str, spec: FieldSpec):
        self.source = source
        self.spec = spec

    def dead(self, position: int, reason: str, payload: bytes, detail: str) -> R.DeadLetter:
        return R.dead_letter(self.source, position, reason, payload, detail, self.spec.max_payload_bytes)

    def from_mapping(self, row: Mapping[str, object], position: int, payload: Callable[[], bytes]) -> Item:
        spec = self.spec
        if spec.text_field not in row:
            return self.dead(position, R.MISSING_TEXT, payload(), f"no field {spec.text_field!r}")
        text = row[spec.text_field]
        if text is None:
            return self.dead(position, R.NULL_TEXT, payload(), f"field {spec.text_field!r} is null")
        if not isinstance(text, str):
            return self.dead(position, R.NON_STRING_TEXT, payload(), f"field {spec.text_field!r} is a {type(text).__name__}")
        if spec.id_field is None:
            record_id = default_id(self.source, position)
        else:
            record_id = as_field_string(row.get(spec.id_field))
            if not record_id:
                return self.dead(position, R.MISSING_ID, payload(), f"no value in id field {spec.id_field!r}")
        fields = {name: as_field_string(row.get(name)) for name in spec.keep_fields}
        strings = [text, record_id, *(v for v in fields.values() if v is not None)]
        if not all(_encodable(s) for s in strings):
            return self.dead(position, R.INVALID_UTF8, payload(), "a string holds a lone surrogate")
        return self.text_record(text, position, payload, record_id, fields)

    def text_record(
        self, text: str, position: int, payload: Callable[[], bytes], record_id: str | None = None, fields=None
    ) -> Item:
        if not text.strip():
            return self.dead(position, R.EMPTY_TEXT, payload(), "empty or whitespace-only text")
        if record_id is None:
            record_id = default_id(self.source, position)
        if fields is None:
            fields = {name: None for name in self.spec.keep_fields}
        return R.Record(record_id, self.source, position, text, fields)


# Called once per blank line skipped (a JSONL or CSV line holding no record); readers count them.
OnBlank = Callable[[], None]


def _ignore() -> None:
    pass


def parse_text(lines: Iterable[bytes], source: str, spec: FieldSpec, on_blank: OnBlank = _ignore) -> Iterator[Item]:
    del on_blank  # every line of a text file is a record: a blank one is an empty_text dead letter
    build = RecordBuilder(source, spec)
    for position, line in _numbered_lines(lines):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            yield build.dead(position, R.INVALID_UTF8, line, str(err))
            continue
        yield build.text_record(text, position, lambda: line)


def parse_jsonl(
    lines: Iterable[bytes], source: str, spec: FieldSpec, on_blank: OnBlank = _ignore, start: int = 0
) -> Iterator[Item]:
    """Records of JSONL ``lines``, the first being line ``start`` of the file."""
    build = RecordBuilder(source, spec)
    for position, line in _numbered_lines(lines, start):
        if not line.strip():
            on_blank()
            continue
        try:
            value = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as err:
            yield build.dead(position, R.INVALID_UTF8, line, str(err))
            continue
        except (ValueError, RecursionError) as err:
            yield build.dead(position, R.INVALID_JSON, line, str(err) or type(err).__name__)
            continue
        if not isinstance(value, dict):
            yield build.dead(position, R.INVALID_JSON, line, f"expected a JSON object, got {type(value).__name__}")
            continue
        yield build.from_mapping(value, position, lambda: line)


class _LineTracker:
    """Feeds decoded lines to ``csv.reader`` and remembers which raw lines made each row.

    ``csv.reader`` pulls exactly the lines of one row before returning it, so
    the lines taken since the previous row are that row's raw text.
    """

    def __init__(self, lines: Iterable[bytes]):
        self._lines = iter(lines)
        self._taken: list[str] = []
        self._next = 0
        self.start = 0

    def __iter__(self) -> "_LineTracker":
        return self

    def __next__(self) -> str:
        raw = next(self._lines)
        if self._next == 0 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        self._next += 1
        line = raw.decode("utf-8", "surrogateescape")
        self._taken.append(line)
        return line

    def take(self) -> tuple[int, bytes]:
        """The start line and raw bytes of the row just read."""
        start, raw = self.start, "".join(self._taken).encode("utf-8", "surrogateescape")
        self._taken = []
        self.start = self._next
        return start, raw


def parse_csv(
    lines: Iterable[bytes], source: str, spec: FieldSpec, on_blank: OnBlank = _ignore, delimiter: str = ","
) -> Iterator[Item]:
    """Records of CSV ``lines`` (header first), or TSV with ``delimiter="\\t"``."""
    build = RecordBuilder(source, spec)
    tracker = _LineTracker(lines)
    # A process-wide setting in the csv module; every CSV parse here wants the same cap.
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(tracker, strict=True, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as err:
        start, raw = tracker.take()
        yield build.dead(start, R.UNREADABLE_FILE, raw, f"CSV header cannot be parsed: {err}")
        return
    start, raw = tracker.take()
    if not all(_encodable(name) for name in header):
        yield build.dead(start, R.UNREADABLE_FILE, raw, "CSV header is not valid UTF-8")
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            start, raw = tracker.take()
            yield build.dead(start, R.INVALID_CSV, raw, str(err))
            continue
        start, raw = tracker.take()
        if not row:
            on_blank()
            continue
        if not all(_encodable(field) for field in row):
            yield build.dead(start, R.INVALID_UTF8, raw, "row holds bytes that are not UTF-8")
        elif len(row) != len(header):
            yield build.dead(start, R.INVALID_CSV, raw, f"expected {len(header)} fields, got {len(row)}")
        else:
            yield build.from_mapping(dict(zip(header, row)), start, lambda raw=raw: raw)


def parse_parquet(file: BinaryIO, source: str, spec: FieldSpec) -> Iterator[Item]:
    """Records of a Parquet file, its text, id and kept columns read in record batches."""
    build = RecordBuilder(source, spec)
    position = 0
    for table in parquet_tables(file, spec, _PARQUET_BATCH_ROWS):
        yield from parquet_rows(build, table, position)
        position += table.num_rows


def parquet_tables(file: BinaryIO, spec: FieldSpec, rows: int) -> Iterator[pa.Table]:
    """The file's text, id and kept columns (those it has), ``rows`` rows at a time."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(file)
    present = set(parquet.schema_arrow.names)
    wanted = [c for c in dict.fromkeys([spec.text_field, spec.id_field, *spec.keep_fields]) if c in present]
    for batch in parquet.iter_batches(batch_size=rows, columns=wanted):
        yield pa.Table.from_batches([batch])


def parquet_rows(build: RecordBuilder, table: pa.Table, start: int) -> Iterator[Item]:
    """Each row of ``table`` (rows ``start``... of the file) checked on its own."""
    for i, row in enumerate(table.to_pylist()):
        yield build.from_mapping(row, start + i, lambda row=row: json.dumps(row, default=str).encode())


def parse(fmt: str, file: BinaryIO, source: str, spec: FieldSpec, on_blank: OnBlank = _ignore) -> Iterator[Item]:
    """Records of one opened (already decompressed) file, in file order.

    Args:
      fmt: one of :data:`FORMATS`.
      file: the file's bytes.
      source: the file's path, for ids and dead letters.
      spec: which fields hold the text, the id and the values kept.
      on_blank: called for each blank JSONL or CSV line skipped.

    Returns:
      :class:`~flaxmodel.records.records.Record` s and
      :class:`~flaxmodel.records.records.DeadLetter` s.
    """
    if fmt == PARQUET:
        return parse_parquet(file, source, spec)
    lines = iter(file.readline, b"")
    if fmt == TSV:
        return parse_csv(lines, source, spec, on_blank, delimiter="\t")
    parsers = {TEXT: parse_text, JSONL: parse_jsonl, CSV: parse_csv}
    return parsers[fmt](lines, source, spec, on_blank)
