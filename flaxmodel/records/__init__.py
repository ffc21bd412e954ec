"""Text records from files: one format layer (text, JSONL, CSV, TSV, Parquet) for the jobs and for training.

Parsers take a file's raw bytes and yield :class:`Record` s and, for every line
or row that cannot become one, a :class:`DeadLetter` with its reason; nothing
here raises on bad input, and nothing imports Beam.  The pipelines read through
:func:`parse_blocks` (records packed into :class:`RecordBlock` columns, pyarrow's
fast path for clean JSONL and Parquet blocks); training reads the same records
through :func:`parse` and refuses a file whose rows dead-letter.
"""

from flaxmodel.records.blocks import BLOCK_RECORDS, parse_blocks
from flaxmodel.records.formats import (
    COMPRESSED_SUFFIXES,
    CSV,
    EXTENSIONS,
    FORMATS,
    JSONL,
    PARQUET,
    TEXT,
    TSV,
    FieldSpec,
    detect_format,
    parse,
)
from flaxmodel.records.records import (
    EMPTY_TEXT,
    INFERENCE_ERROR,
    INVALID_LABEL,
    MISSING_TEXT,
    NON_STRING_TEXT,
    NULL_TEXT,
    REASONS,
    UNREADABLE_FILE,
    DeadLetter,
    Record,
    RecordBlock,
    dead_letter,
)

__all__ = [
    "BLOCK_RECORDS",
    "COMPRESSED_SUFFIXES",
    "CSV",
    "EMPTY_TEXT",
    "EXTENSIONS",
    "FORMATS",
    "INFERENCE_ERROR",
    "INVALID_LABEL",
    "JSONL",
    "MISSING_TEXT",
    "NON_STRING_TEXT",
    "NULL_TEXT",
    "PARQUET",
    "REASONS",
    "TEXT",
    "TSV",
    "UNREADABLE_FILE",
    "DeadLetter",
    "FieldSpec",
    "Record",
    "RecordBlock",
    "dead_letter",
    "detect_format",
    "parse",
    "parse_blocks",
]
