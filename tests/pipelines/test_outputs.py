"""The labels table: column clashes refused up front, rows shaped like the schema."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipelines.classify import Scored
from pipelines.options import OptionError
from pipelines.outputs import label_row, labels_schema
from pipelines.records import Record

LABELS = ("hate", "offensive", "neither")


def test_labels_schema_has_a_float32_column_per_class_then_extras():
    schema = labels_schema(LABELS, keep_text=True, keep_fields=("lang",))
    assert schema.names == [
        "id", "label", "score", "hate", "offensive", "neither", "flagged",
        "num_tokens", "num_windows", "truncated", "model", "text", "lang",
    ]  # fmt: skip
    assert all(schema.field(name).type == pa.float32() for name in ("score", *LABELS))


@pytest.mark.parametrize(
    "labels, keep_fields, message",
    [
        (("label", "other"), (), "clash with fixed output columns"),
        (LABELS, ("id",), "use --id_field"),
        (LABELS, ("hate",), "--keep_fields hate"),
        (LABELS, ("lang", "lang"), "listed twice"),
    ],
)
def test_clashing_column_names_are_refused(labels, keep_fields, message):
    with pytest.raises(OptionError, match=message):
        labels_schema(labels, keep_text=False, keep_fields=keep_fields)


def test_a_label_row_converts_to_the_schema():
    record = Record("r1", "f.jsonl", 3, "some text", {"lang": None})
    scored = Scored(record, np.array([0.7, 0.2, 0.1], np.float32), "hate", 5, 1, False, "m@abc")
    row = label_row(scored, LABELS, {"hate": 0.6}, keep_text=True, keep_fields=("lang",))
    schema = labels_schema(LABELS, keep_text=True, keep_fields=("lang",))
    table = pa.Table.from_pylist([row], schema=schema)
    assert table.to_pylist()[0] == {
        "id": "r1", "label": "hate", "score": pytest.approx(0.7), "hate": pytest.approx(0.7),
        "offensive": pytest.approx(0.2), "neither": pytest.approx(0.1), "flagged": True, "num_tokens": 5,
        "num_windows": 1, "truncated": False, "model": "m@abc", "text": "some text", "lang": None,
    }  # fmt: skip
