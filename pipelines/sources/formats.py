"""Parsing input shards into records: plain text, JSONL, CSV and Parquet.

Every parser takes the file's raw bytes (lines, or the open file for Parquet)
and decodes them itself, so a bad byte, line or row becomes a dead-letter row
and never fails the job.  Each yields :class:`~pipelines.records.Record` or
:class:`~pipelines.records.DeadLetter` items in file order; ``position`` is the
0-based line where the record starts (text, JSONL, CSV, header included) or the
0-based row (Parquet).

* text: every line is a record (a blank line is an ``empty_text`` dead letter).
* JSONL: one JSON object per line; blank lines hold no record and are skipped.
* CSV: header row, then rows; quoted fields may span lines.  Lines are decoded
  with ``surrogateescape`` so that invalid UTF-8 in one row dead-letters only
  that row; blank lines are skipped.
* Parquet: the text, id and kept columns are read in record batches.

The default record id is ``<file path>:<position>``, stable across runs.

:func:`parse_blocks` is what the pipelines read with: the same records as
:func:`parse`, packed into :class:`~pipelines.records.RecordBlock` columns of up
to :data:`BLOCK_RECORDS` records.  JSONL and Parquet blocks are decoded by
pyarrow in one call (1.8 million JSONL rows/s on the 2-core benchmark machine,
issue 12's measurement, with no Python work per line); a block pyarrow
refuses, or whose columns do not pass the checks below, goes through the
per-line parsers, which find and dead-letter the bad lines with exactly the
reasons :func:`parse` gives.  So the fast path only ever handles blocks where
every line is one JSON object holding a non-blank, valid UTF-8 string text (and
string ids and kept fields), and everything else takes the exact path.  Text
and CSV files go through the per-line parsers, packed into blocks.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from typing import BinaryIO, Callable, Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from apache_beam.metrics import Metrics

from pipelines import records as R
from pipelines.metrics import NAMESPACE

TEXT, JSONL, CSV, PARQUET = "text", "jsonl", "csv", "parquet"
FORMATS = (TEXT, JSONL, CSV, PARQUET)
EXTENSIONS = {
    ".txt": TEXT,
    ".text": TEXT,
    ".jsonl": JSONL,
    ".ndjson": JSONL,
    ".json": JSONL,
    ".csv": CSV,
    ".parquet": PARQUET,
    ".pq": PARQUET,
}
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".deflate", ".zst", ".zstd", ".lzma", ".xz")
_BOM = b"\xef\xbb\xbf"
_PARQUET_BATCH_ROWS = 4096
# Python's csv refuses fields over 131,072 characters, which dead-lettered long posts that JSONL and
# Parquet label.  The cap stays (an unterminated quote would otherwise pull the rest of a shard into one
# field), raised to what a record's windows can use many times over; a longer field is an invalid_csv
# dead letter saying so.
CSV_FIELD_LIMIT = 16 * 2**20

# Records per block: thousands amortise each step's per-call cost (pyarrow, encode_batch, the batch
# planner, a Parquet row group) and keep a block of tweets around a megabyte.
BLOCK_RECORDS = 4096
# A line holding anything but one JSON object (blank lines included) sends its block to the exact path.
_NOT_ONE_OBJECT = re.compile(rb"^(?![ \t]*\{.*\}[ \t\r]*$)", re.MULTILINE)
# Texts that str.strip() empties, as an RE2 pattern for pyarrow (RE2's \s is ASCII only).
_BLANK_TEXT = "^[" + "".join(f"\\x{{{c:x}}}" for c in range(0x110000) if chr(c).isspace()) + "]*$"

Item = R.Record | R.DeadLetter
Element = R.RecordBlock | R.DeadLetter


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
        if position == 0 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        yield position, line


class _Builder:
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


def _skip_blank() -> None:
    Metrics.counter(NAMESPACE, "blank_lines_skipped").inc()


def parse_text(lines: Iterable[bytes], source: str, spec: FieldSpec) -> Iterator[Item]:
    build = _Builder(source, spec)
    for position, line in _numbered_lines(lines):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            yield build.dead(position, R.INVALID_UTF8, line, str(err))
            continue
        yield build.text_record(text, position, lambda: line)


def parse_jsonl(lines: Iterable[bytes], source: str, spec: FieldSpec, start: int = 0) -> Iterator[Item]:
    """Records of JSONL ``lines``, the first being line ``start`` of the file."""
    build = _Builder(source, spec)
    for position, line in _numbered_lines(lines, start):
        if not line.strip():
            _skip_blank()
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
        if self._next == 0 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
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


def parse_csv(lines: Iterable[bytes], source: str, spec: FieldSpec) -> Iterator[Item]:
    build = _Builder(source, spec)
    tracker = _LineTracker(lines)
    # A process-wide setting in the csv module; every CSV parse here wants the same cap.
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(tracker, strict=True)
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
            _skip_blank()
            continue
        if not all(_encodable(field) for field in row):
            yield build.dead(start, R.INVALID_UTF8, raw, "row holds bytes that are not UTF-8")
        elif len(row) != len(header):
            yield build.dead(start, R.INVALID_CSV, raw, f"expected {len(header)} fields, got {len(row)}")
        else:
            yield build.from_mapping(dict(zip(header, row)), start, lambda raw=raw: raw)


def parse_parquet(file: BinaryIO, source: str, spec: FieldSpec) -> Iterator[Item]:
    build = _Builder(source, spec)
    position = 0
    for table in _parquet_tables(file, spec, _PARQUET_BATCH_ROWS):
        yield from _parquet_rows(build, table, position)
        position += table.num_rows


def _parquet_tables(file: BinaryIO, spec: FieldSpec, rows: int) -> Iterator[pa.Table]:
    """The file's text, id and kept columns (those it has), ``rows`` rows at a time."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(file)
    present = set(parquet.schema_arrow.names)
    wanted = [c for c in dict.fromkeys([spec.text_field, spec.id_field, *spec.keep_fields]) if c in present]
    for batch in parquet.iter_batches(batch_size=rows, columns=wanted):
        yield pa.Table.from_batches([batch])


def _parquet_rows(build: _Builder, table: pa.Table, start: int) -> Iterator[Item]:
    """Each row of ``table`` (rows ``start``... of the file) checked on its own."""
    for i, row in enumerate(table.to_pylist()):
        yield build.from_mapping(row, start + i, lambda row=row: json.dumps(row, default=str).encode())


def parse(fmt: str, file: BinaryIO, source: str, spec: FieldSpec) -> Iterator[Item]:
    """Records of one opened (already decompressed) file in format ``fmt``."""
    if fmt == PARQUET:
        return parse_parquet(file, source, spec)
    lines = iter(file.readline, b"")
    parsers = {TEXT: parse_text, JSONL: parse_jsonl, CSV: parse_csv}
    return parsers[fmt](lines, source, spec)


def parse_blocks(
    fmt: str, file: BinaryIO, source: str, spec: FieldSpec, block_records: int = BLOCK_RECORDS
) -> Iterator[Element]:
    """The records of :func:`parse` in blocks of at most ``block_records``, and its dead letters one by one."""
    if fmt == JSONL:
        return _jsonl_blocks(file, source, spec, block_records)
    if fmt == PARQUET:
        return _parquet_blocks(file, source, spec, block_records)
    return _pack(parse(fmt, file, source, spec), spec, block_records)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    """Lists of ``size`` consecutive items (the last one shorter); if reading fails, what was read
    before the failure comes out first, then the error is raised, so a broken file loses no record
    that the per-line parsers would have yielded."""
    chunk: list = []
    try:
        for item in items:
            chunk.append(item)
            if len(chunk) == size:
                yield chunk
                chunk = []
    except Exception:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def _pack(items: Iterable[Item], spec: FieldSpec, block_records: int) -> Iterator[Element]:
    for chunk in _chunks(items, block_records):
        records = [item for item in chunk if isinstance(item, R.Record)]
        yield from (item for item in chunk if isinstance(item, R.DeadLetter))
        if records:
            yield R.RecordBlock.from_records(records, spec.keep_fields)


def _string_column(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    """Column ``name`` if it holds valid UTF-8 strings only (nulls allowed), else None."""
    if name not in table.column_names:
        return None
    column = table.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return column


def _arrow_block(table: pa.Table, source: str, start: int, spec: FieldSpec) -> R.RecordBlock | None:
    """``table``'s rows (rows/lines ``start``...) as a block, or None if a row needs the per-row checks."""
    n = table.num_rows
    text = _string_column(table, spec.text_field)
    if text is None or text.null_count or pc.any(pc.match_substring_regex(text, _BLANK_TEXT)).as_py():
        return None
    if spec.id_field is None:
        ids = [default_id(source, p) for p in range(start, start + n)]
    else:
        column = _string_column(table, spec.id_field)
        if column is None or column.null_count or pc.any(pc.equal(column, "")).as_py():
            return None
        ids = column.to_pylist()
    fields = {}
    for name in spec.keep_fields:
        if name not in table.column_names or pa.types.is_null(table.column(name).type):
            fields[name] = [None] * n
            continue
        column = _string_column(table, name)
        if column is None:
            return None
        fields[name] = column.to_pylist()
    return R.RecordBlock(source, np.arange(start, start + n, dtype=np.int64), ids, text.to_pylist(), fields)


def _jsonl_table(lines: list[bytes], start: int, schema: pa.Schema) -> pa.Table | None:
    """The lines as a table of ``schema``'s string columns if each is one JSON object of valid UTF-8, else None."""
    chunk = b"".join(lines)
    if start == 0 and chunk.startswith(_BOM):
        return None
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _NOT_ONE_OBJECT.search(chunk, 0, len(chunk) - chunk.endswith(b"\n")):
        return None
    try:
        table = pa_json.read_json(
            io.BytesIO(chunk),
            read_options=pa_json.ReadOptions(block_size=len(chunk) + 1),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except pa.ArrowInvalid:
        return None
    return table if table.num_rows == len(lines) else None


def _jsonl_blocks(file: BinaryIO, source: str, spec: FieldSpec, block_records: int) -> Iterator[Element]:
    names = dict.fromkeys(name for name in (spec.text_field, spec.id_field, *spec.keep_fields) if name)
    schema = pa.schema([(name, pa.string()) for name in names])
    start = 0
    for lines in _chunks(iter(file.readline, b""), block_records):
        table = _jsonl_table(lines, start, schema)
        block = _arrow_block(table, source, start, spec) if table is not None else None
        if block is not None:
            yield block
        else:
            yield from _pack(parse_jsonl(lines, source, spec, start), spec, block_records)
        start += len(lines)


def _parquet_blocks(file: BinaryIO, source: str, spec: FieldSpec, block_records: int) -> Iterator[Element]:
    build = _Builder(source, spec)
    start = 0
    for table in _parquet_tables(file, spec, block_records):
        block = _arrow_block(table, source, start, spec)
        if block is not None:
            yield block
        else:
            yield from _pack(_parquet_rows(build, table, start), spec, block_records)
        start += table.num_rows
