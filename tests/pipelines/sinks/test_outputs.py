"""The labels table: column clashes refused up front, rows shaped like the schema."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipelines.model import ScoredBlock
from pipelines.options import OptionError
from pipelines.sinks import label_table, labels_schema
from flaxmodel.records import RecordBlock

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


def _scored() -> ScoredBlock:
    records = RecordBlock("f.jsonl", np.array([3, 4]), ["r1", "r2"], ["some text", "other"], {"lang": [None, "en"]})
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], np.float32)
    targets = np.array([[0.9, 0.1], [0.2, 0.3]], np.float32)
    return ScoredBlock(
        records, scores, np.array([0, 2]), targets, np.array([5, 9], np.int32), np.array([1, 2], np.int32),
        np.array([False, True]), "m@abc",
    )  # fmt: skip


def test_a_scored_block_becomes_rows_of_the_schema():
    schema = labels_schema(LABELS, keep_text=True, keep_fields=("lang",))
    table = label_table(_scored(), schema, LABELS, {"hate": 0.6}, keep_text=True, keep_fields=("lang",))
    assert table.schema == schema
    assert table.to_pylist() == [
        {
            "id": "r1", "label": "hate", "score": pytest.approx(0.7), "hate": pytest.approx(0.7),
            "offensive": pytest.approx(0.2), "neither": pytest.approx(0.1), "flagged": True, "num_tokens": 5,
            "num_windows": 1, "truncated": False, "model": "m@abc", "text": "some text", "lang": None,
        },
        {
            "id": "r2", "label": "neither", "score": pytest.approx(0.6), "hate": pytest.approx(0.1),
            "offensive": pytest.approx(0.3), "neither": pytest.approx(0.6), "flagged": False, "num_tokens": 9,
            "num_windows": 2, "truncated": True, "model": "m@abc", "text": "other", "lang": "en",
        },
    ]  # fmt: skip


def test_a_model_with_a_target_head_adds_its_scores_and_the_groups_at_their_thresholds():
    schema = labels_schema(LABELS, targets=("race", "religion"), keep_text=False, keep_fields=())
    assert schema.field("targets").type == pa.list_(pa.string())
    assert schema.names.index("target_race") == schema.names.index("flagged") + 1
    table = label_table(
        _scored(), schema, LABELS, {}, targets={"race": 0.5, "religion": 0.3}, keep_text=False, keep_fields=()
    )
    assert table.schema == schema
    assert table.column("target_race").to_pylist() == [pytest.approx(0.9), pytest.approx(0.2)]
    # At or above each group's own threshold: 0.3 (float32 0.30000001) reaches religion's 0.3.
    assert table.column("targets").to_pylist() == [["race"], ["religion"]]
    assert "targets" not in labels_schema(LABELS, keep_text=False, keep_fields=()).names


def test_target_columns_cannot_clash_with_kept_fields():
    with pytest.raises(OptionError, match="--keep_fields target_race"):
        labels_schema(LABELS, targets=("race",), keep_text=False, keep_fields=("target_race",))


def test_flagged_is_null_without_thresholds_and_compares_like_python_floats():
    schema = labels_schema(LABELS, keep_text=False, keep_fields=())
    unflagged = label_table(_scored(), schema, LABELS, {}, keep_text=False, keep_fields=())
    assert unflagged.column("flagged").to_pylist() == [None, None]
    # As float32, 0.7 is 0.69999999 (below 0.7) and 0.3 is 0.30000001 (above 0.3), as Python compares them.
    exact = label_table(_scored(), schema, LABELS, {"hate": 0.7, "offensive": 0.3}, keep_text=False, keep_fields=())
    assert exact.column("flagged").to_pylist() == [False, True]
