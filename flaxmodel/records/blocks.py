"""Record blocks, what the pipelines read: a file's records packed into columns, fast where the file is clean.

:func:`parse_blocks` gives the same records as :func:`~flaxmodel.records.formats.parse`,
packed into :class:`~flaxmodel.records.records.RecordBlock` columns of up to
:data:`BLOCK_RECORDS` records, and its dead letters one by one.  JSONL and
Parquet blocks are decoded by pyarrow in one call, with no Python work per
line (``benchmarks/README.md``, host feed); a block pyarrow refuses, or whose
columns do not pass the checks below, goes through the per-line parsers, which
find and dead-letter the bad lines with exactly the reasons ``parse`` gives.
So the fast path only ever handles blocks where every line is one JSON object
holding a non-blank, valid UTF-8 string text (and string ids and kept fields),
and everything else takes the exact path.  Text and CSV files go through the
per-line parsers, packed into blocks.
"""

from __future__ import annotations

import io
import re
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

import flaxmodel.records.records as R
from flaxmodel.records.formats import (
    BOM,
    JSONL,
    PARQUET,
    FieldSpec,
    Item,
    OnBlank,
    _ignore,
    RecordBuilder,
    default_id,
    parquet_rows,
    parquet_tables,
    parse,
    parse_jsonl,
)

# Records per block: thousands amortise each step's per-call cost (pyarrow, encode_batch, the batch
# planner, a Parquet row group) and keep a block of tweets around a megabyte.
BLOCK_RECORDS = 4096
# A line holding anything but one JSON object (blank lines included) sends its block to the exact path.
_NOT_ONE_OBJECT = re.compile(rb"^(?![ \t]*\{.*\}[ \t\r]*$)", re.MULTILINE)
# Texts that str.strip() empties, as an RE2 pattern for pyarrow (RE2's \s is ASCII only).
_BLANK_TEXT = "^[" + "".join(f"\\x{{{c:x}}}" for c in range(0x110000) if chr(c).isspace()) + "]*$"

Element = R.RecordBlock | R.DeadLetter


def parse_blocks(
    fmt: str,
    file: BinaryIO,
    source: str,
    spec: FieldSpec,
    block_records: int = BLOCK_RECORDS,
    on_blank: OnBlank | None = None,
) -> Iterator[Element]:
    """The records of :func:`~flaxmodel.records.formats.parse` in blocks, and its dead letters one by one.

    Args:
      fmt, file, source, spec: as for ``parse``.
      block_records: records per block at most.
      on_blank: called for each blank JSONL or CSV line skipped.

    Returns:
      :class:`~flaxmodel.records.records.RecordBlock` s of one file's records, in file order, with its
      :class:`~flaxmodel.records.records.DeadLetter` s between them.
    """
    on_blank = on_blank or _ignore
    if fmt == JSONL:
        return _jsonl_blocks(file, source, spec, block_records, on_blank)
    if fmt == PARQUET:
        return _parquet_blocks(file, source, spec, block_records)
    return _pack(parse(fmt, file, source, spec, on_blank), spec, block_records)


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
    if start == 0 and chunk.startswith(BOM):
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


def _jsonl_blocks(
    file: BinaryIO, source: str, spec: FieldSpec, block_records: int, on_blank: OnBlank
) -> Iterator[Element]:
    names = dict.fromkeys(name for name in (spec.text_field, spec.id_field, *spec.keep_fields) if name)
    schema = pa.schema([(name, pa.string()) for name in names])
    start = 0
    for lines in _chunks(iter(file.readline, b""), block_records):
        table = _jsonl_table(lines, start, schema)
        block = _arrow_block(table, source, start, spec) if table is not None else None
        if block is not None:
            yield block
        else:
            yield from _pack(parse_jsonl(lines, source, spec, on_blank, start), spec, block_records)
        start += len(lines)


def _parquet_blocks(file: BinaryIO, source: str, spec: FieldSpec, block_records: int) -> Iterator[Element]:
    build = RecordBuilder(source, spec)
    start = 0
    for table in parquet_tables(file, spec, block_records):
        block = _arrow_block(table, source, start, spec)
        if block is not None:
            yield block
        else:
            yield from _pack(parquet_rows(build, table, start), spec, block_records)
        start += table.num_rows
