"""The elements that flow through the pipelines: input records and dead-letter rows.

A :class:`Record` is one text read from an input shard, with a stable id.  A
:class:`DeadLetter` is anything that could not become a labeled row: it keeps
the source file, the position of the record in it, a reason code (see
:data:`REASONS`), the raw payload capped in size, and a human-readable detail.
Every record read ends up either labeled or dead-lettered, never dropped.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

from apache_beam.metrics import Metrics

from pipelines.metrics import NAMESPACE

INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
INVALID_CSV = "invalid_csv"
MISSING_TEXT = "missing_text"
NULL_TEXT = "null_text"
NON_STRING_TEXT = "non_string_text"
EMPTY_TEXT = "empty_text"
MISSING_ID = "missing_id"
UNREADABLE_FILE = "unreadable_file"
INFERENCE_ERROR = "inference_error"
INVALID_LABEL = "invalid_label"

REASONS: Mapping[str, str] = {
    INVALID_UTF8: "the bytes are not UTF-8, or a JSON string escapes a lone surrogate",
    INVALID_JSON: "a JSONL line is not a JSON object",
    INVALID_CSV: "a CSV row cannot be parsed (bad quoting, unterminated quote, wrong field count)",
    MISSING_TEXT: "the record has no text field/column",
    NULL_TEXT: "the text field is null",
    NON_STRING_TEXT: "the text field holds a number, list, object or other non-string",
    EMPTY_TEXT: "the text is empty or whitespace only",
    MISSING_ID: "--id_field is set but the record's id is missing, null or empty",
    UNREADABLE_FILE: "the file (or the rest of it) cannot be read: corrupt gzip or Parquet, unknown format",
    INFERENCE_ERROR: "the model failed on the batch holding the record",
    INVALID_LABEL: "evaluation only: the label is missing or is neither an id nor a name of the model's labels",
}


class Record(NamedTuple):
    """One text to classify.  ``position`` is the 0-based line (text, JSONL, CSV) or row (Parquet)."""

    id: str
    source: str
    position: int
    text: str
    fields: Mapping[str, str | None]


class DeadLetter(NamedTuple):
    source: str
    position: int
    reason: str
    payload: bytes
    detail: str


def dead_letter(source: str, position: int, reason: str, payload: bytes, detail: str, max_payload_bytes: int) -> DeadLetter:
    """A dead-letter row, counted in the metrics by reason, payload capped to ``max_payload_bytes``."""
    if reason not in REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}")
    Metrics.counter(NAMESPACE, "dead_lettered").inc()
    Metrics.counter(NAMESPACE, f"dead_letter_{reason}").inc()
    return DeadLetter(source, position, reason, bytes(payload[:max_payload_bytes]), detail)
