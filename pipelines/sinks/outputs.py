"""The output tables: fixed pyarrow schemas and the tables that fill them.

``labels-*.parquet`` (:func:`labels_schema`), one row per labeled record, each
scored block's rows built column by column (:func:`label_table`):

==============  =========  ====================================================
column          type       meaning
==============  =========  ====================================================
id              string     record id (``--id_field``, or ``<file>:<position>``)
label           string     the class with the highest aggregated score
score           float32    that class's score
<label>         float32    one column per class, named from the model's id2label
flagged         bool       a class reached its ``--threshold``; null if none set
target_<group>  float32    with a target-group head only: the score of "the text attacks <group>"
targets         list<str>  with a target-group head only: the groups whose score reached the model's
                           threshold for that group (``target_head.json``), without the prefix
num_tokens      int32      tokens of the whole text, special tokens included
num_windows     int32      windows the text was split into
truncated       bool       the text needed more than ``--max_windows`` windows
model           string     ``<checkpoint folder name>@<weights hash>:<precision>`` (float32, bfloat16 or int8)
text            string     the text, with ``--keep_text`` only
<field>         string     each ``--keep_fields`` field, as a string (or null)
==============  =========  ====================================================

``dead_letter-*.parquet`` (:data:`DEAD_LETTER_SCHEMA`), one row per record that
could not be labeled: ``source`` (file path), ``position`` (line or row),
``reason`` (a code from :data:`flaxmodel.records.REASONS`), ``payload`` (raw
bytes, capped at ``--max_payload_bytes``) and ``detail`` (the error message).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from flaxmodel import OptionError
from pipelines.model import ScoredBlock
from pipelines.names import DEAD_LETTER_COUNTER_PREFIX, DEAD_LETTERED, NAMESPACE, TARGET_COLUMN_PREFIX, TARGETS
from pipelines.sinks.flagging import flagged_column
from flaxmodel.records import DeadLetter

FIXED_COLUMNS = ("id", "label", "score", "flagged", TARGETS, "num_tokens", "num_windows", "truncated", "model", "text")

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("position", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("payload", pa.binary(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
    ]
)


def labels_schema(
    labels: Sequence[str], *, targets: Sequence[str] = (), keep_text: bool, keep_fields: Sequence[str]
) -> pa.Schema:
    """The labels table's schema; raises :class:`OptionError` if two columns would share a name.

    Args:
      labels: the model's classes.
      targets: its target-group categories (none: no ``target_*`` or ``targets`` columns).
      keep_text, keep_fields: ``--keep_text`` and ``--keep_fields``.
    """
    target_columns = {TARGET_COLUMN_PREFIX + t for t in targets}
    clashing = sorted(set(labels) & {*FIXED_COLUMNS, *target_columns})
    if clashing:
        raise OptionError(f"the model's labels {clashing} clash with fixed output columns {list(FIXED_COLUMNS)}")
    for name in keep_fields:
        if name in FIXED_COLUMNS or name in labels or name in target_columns:
            hint = "; use --id_field to take ids from it" if name == "id" else ""
            raise OptionError(f"--keep_fields {name}: clashes with an output column of the same name{hint}")
    if len(set(keep_fields)) != len(keep_fields):
        raise OptionError(f"--keep_fields {','.join(keep_fields)}: a field is listed twice")
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        *(pa.field(name, pa.float32(), nullable=False) for name in labels),
        pa.field("flagged", pa.bool_()),
        *(pa.field(TARGET_COLUMN_PREFIX + t, pa.float32(), nullable=False) for t in targets),
        *([pa.field(TARGETS, pa.list_(pa.string()), nullable=False)] if targets else []),
        pa.field("num_tokens", pa.int32(), nullable=False),
        pa.field("num_windows", pa.int32(), nullable=False),
        pa.field("truncated", pa.bool_(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
    ]
    if keep_text:
        fields.append(pa.field("text", pa.string(), nullable=False))
    fields.extend(pa.field(name, pa.string()) for name in keep_fields)
    return pa.schema(fields)


def label_table(
    scored: ScoredBlock,
    schema: pa.Schema,
    labels: Sequence[str],
    thresholds: Mapping[str, float],
    *,
    targets: Mapping[str, float] | None = None,
    keep_text: bool,
    keep_fields: Sequence[str],
) -> pa.Table:
    """A scored block's rows of the labels table, built column by column.

    Args:
      scored: ``n`` labeled records.
      schema: :func:`labels_schema` for the same labels, targets and flags.
      labels: the model's labels.
      thresholds: ``{label: threshold}``.
      targets: ``{category: threshold}`` of the model's target head, in its order (None: no head).
      keep_text, keep_fields: ``--keep_text`` and ``--keep_fields``.

    Returns:
      A table of ``n`` rows with ``schema``.
    """
    n = len(scored.label)
    names = np.asarray(labels, dtype=object)
    columns = {
        "id": pa.array(scored.records.ids, pa.string()),
        "label": pa.array(names[scored.label], pa.string()),
        "score": pa.array(scored.scores[np.arange(n), scored.label], pa.float32()),
        **{name: pa.array(scored.scores[:, j], pa.float32()) for j, name in enumerate(labels)},
        "flagged": flagged_column(scored.scores, labels, thresholds),
        **target_columns(scored.target_scores, targets or {}),
        "num_tokens": pa.array(scored.num_tokens, pa.int32()),
        "num_windows": pa.array(scored.num_windows, pa.int32()),
        "truncated": pa.array(scored.truncated, pa.bool_()),
        "model": pa.array([scored.model] * n, pa.string()),
    }
    if keep_text:
        columns["text"] = pa.array(scored.records.texts, pa.string())
    for name in keep_fields:
        columns[name] = pa.array(scored.records.fields[name], pa.string())
    return pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)


def target_columns(scores: np.ndarray, targets: Mapping[str, float]) -> dict[str, pa.Array]:
    """The ``target_<group>`` score columns and the ``targets`` list of ``scores [n, len(targets)]``."""
    if not targets:
        return {}
    names = list(targets)
    reached = scores >= np.asarray([targets[t] for t in names], np.float32)
    # One flat array of every row's groups, cut into lists by offsets: no Python loop over rows.
    rows, groups = np.nonzero(reached)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(scores)))]).astype(np.int32)
    named = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.asarray(names, dtype=object)[groups], pa.string()))
    return {
        **{TARGET_COLUMN_PREFIX + t: pa.array(scores[:, j], pa.float32()) for j, t in enumerate(names)},
        TARGETS: named,
    }


class DeadLetterRows(beam.DoFn):
    """Dead letters -> rows of :data:`DEAD_LETTER_SCHEMA`, each counted (``dead_lettered`` and per reason).

    Every dead letter of a run, whichever step found it, passes here once on its way to
    ``dead_letter-*.parquet``, so these counters are exactly the rows written.
    """

    def setup(self) -> None:
        self._total = Metrics.counter(NAMESPACE, DEAD_LETTERED)
        self._by_reason: dict[str, Any] = {}

    def process(self, dead: DeadLetter) -> Iterable[dict]:
        if dead.reason not in self._by_reason:
            self._by_reason[dead.reason] = Metrics.counter(NAMESPACE, DEAD_LETTER_COUNTER_PREFIX + dead.reason)
        self._total.inc()
        self._by_reason[dead.reason].inc()
        yield dead._asdict()
