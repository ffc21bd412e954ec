"""Input records and dead-letter rows: what every reader of text files yields.

A :class:`Record` is one text read from an input file, with a stable id; a
:class:`RecordBlock` holds thousands of them from one file as columns, the
element the pipelines pass from reading to writing.  A
:class:`DeadLetter` is anything that could not become a labeled row: it keeps
the source file, the position of the record in it, a reason code (see
:data:`REASONS`), the raw payload capped in size, and a human-readable detail.
Every record read ends up either labeled or dead-lettered, never dropped.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

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


class RecordBlock(NamedTuple):
    """Records of one source file as columns, in file order.

    Attributes:
      source: the file they were read from.
      positions: int64 ``[n]``, each record's line or row.
      ids: ``n`` record ids.
      texts: ``n`` texts.
      fields: each kept field's ``n`` values (strings or None).
    """

    source: str
    positions: np.ndarray
    ids: list[str]
    texts: list[str]
    fields: Mapping[str, list[str | None]]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, indices: Sequence[int] | np.ndarray) -> "RecordBlock":
        """The block of the records at ``indices``, in that order."""
        indices = np.asarray(indices, np.int64)
        chosen = indices.tolist()
        return RecordBlock(
            self.source,
            self.positions[indices],
            [self.ids[i] for i in chosen],
            [self.texts[i] for i in chosen],
            {name: [values[i] for i in chosen] for name, values in self.fields.items()},
        )

    def record(self, i: int) -> Record:
        """Record ``i`` on its own."""
        fields = {name: values[i] for name, values in self.fields.items()}
        return Record(self.ids[i], self.source, int(self.positions[i]), self.texts[i], fields)

    @classmethod
    def from_records(cls, records: Sequence[Record], keep_fields: Sequence[str]) -> "RecordBlock":
        """The block of ``records``, all read from one source file (at least one record)."""
        return cls(
            records[0].source,
            np.fromiter((r.position for r in records), np.int64, len(records)),
            [r.id for r in records],
            [r.text for r in records],
            {name: [r.fields.get(name) for r in records] for name in keep_fields},
        )


class DeadLetter(NamedTuple):
    source: str
    position: int
    reason: str
    payload: bytes
    detail: str


def dead_letter(source: str, position: int, reason: str, payload: bytes, detail: str, max_payload_bytes: int) -> DeadLetter:
    """A dead-letter row, its payload capped to ``max_payload_bytes``."""
    if reason not in REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}")
    return DeadLetter(source, position, reason, bytes(payload[:max_payload_bytes]), detail)
