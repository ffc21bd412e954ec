"""Sources: input shards matched, opened and parsed into record blocks, with a dead letter for every bad record.

:class:`ReadRecords` is the step the jobs start with; the rest is what the steps
after it handle (blocks, records, dead letters and their reasons).
"""

from pipelines.sources.blocks import BLOCK_RECORDS, parse_blocks
from pipelines.sources.formats import FORMATS, FieldSpec, detect_format, parse
from pipelines.sources.read import ReadRecords, is_direct_runner, match_inputs, split_patterns
from pipelines.sources.records import (
    INFERENCE_ERROR,
    INVALID_LABEL,
    REASONS,
    UNREADABLE_FILE,
    DeadLetter,
    Record,
    RecordBlock,
    dead_letter,
)

__all__ = [
    "BLOCK_RECORDS",
    "FORMATS",
    "INFERENCE_ERROR",
    "INVALID_LABEL",
    "REASONS",
    "UNREADABLE_FILE",
    "DeadLetter",
    "FieldSpec",
    "ReadRecords",
    "Record",
    "RecordBlock",
    "dead_letter",
    "detect_format",
    "is_direct_runner",
    "match_inputs",
    "parse",
    "parse_blocks",
    "split_patterns",
]
