"""Reading labeled data: every format, labels as ids or names, and bad rows named."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flaxmodel.errors import DataError
from flaxmodel.training.data import LABELED_FORMATS, read_labeled

LABELS = ("hate", "offensive", "neither")
ROWS = [("you people are vermin", 0), ("shut up, idiot", 1), ("lovely day", 2), ("multi\nline, \"quoted\"", 2)]


def test_csv_with_ids_and_quoted_multiline_text(tmp_path):
    path = tmp_path / "train.csv"
    lines = ["id,tweet,class"] + [f'{i},"{t.replace(chr(34), chr(34) * 2)}",{y}' for i, (t, y) in enumerate(ROWS)]
    path.write_text("\n".join(lines) + "\n")
    data = read_labeled(str(path), text_field="tweet", label_field="class", labels=LABELS)
    assert data.texts == [t for t, _ in ROWS]
    np.testing.assert_array_equal(data.label_ids, [y for _, y in ROWS])
    assert data.labels == LABELS
    assert data.counts() == {"hate": 1, "offensive": 1, "neither": 2}


def test_jsonl_with_label_names_and_a_glob(tmp_path):
    for shard, rows in enumerate((ROWS[:2], ROWS[2:])):
        with open(tmp_path / f"part-{shard}.jsonl", "w") as f:
            for text, y in rows:
                f.write(json.dumps({"text": text, "label": LABELS[y]}) + "\n")
    data = read_labeled(str(tmp_path / "part-*.jsonl"), labels=LABELS)
    np.testing.assert_array_equal(data.label_ids, [y for _, y in ROWS])


def test_names_without_known_labels_are_sorted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": LABELS[y]}) + "\n" for t, y in ROWS))
    data = read_labeled(str(path))
    assert data.labels == ("hate", "neither", "offensive")
    assert [data.labels[i] for i in data.label_ids] == [LABELS[y] for _, y in ROWS]


def test_parquet_with_integer_labels(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": [t for t, _ in ROWS], "y": [y for _, y in ROWS]}), path)
    data = read_labeled(str(path), text_field="body", label_field="y")
    assert data.labels == ("LABEL_0", "LABEL_1", "LABEL_2")
    np.testing.assert_array_equal(data.label_ids, [y for _, y in ROWS])


def test_tweeteval_text_and_label_files_with_mapping(tmp_path):
    (tmp_path / "train_text.txt").write_text("i hate you \nnice one \n")
    (tmp_path / "train_labels.txt").write_text("1\n0\n")
    (tmp_path / "mapping.txt").write_text("0\tnot-hate\n1\thate\n")
    data = read_labeled(str(tmp_path / "train_text.txt"))
    assert data.texts == ["i hate you ", "nice one "]
    assert data.labels == ("not-hate", "hate")
    np.testing.assert_array_equal(data.label_ids, [1, 0])


def test_unknown_label_names_the_row(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "a", "label": "hate"}, {"text": "b", "label": "spam"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError, match=r"d.jsonl:2: label 'spam'"):
        read_labeled(str(path), labels=LABELS)


def test_rows_the_jobs_would_dead_letter_for_their_text_are_skipped_naming_the_line(tmp_path, caplog):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "a", "label": 0}, {"label": 1}, {"text": "  ", "label": 1}, {"text": "b", "label": 2}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = read_labeled(str(path), labels=LABELS)
    assert data.texts == ["a", "b"]
    assert "skipped 2 rows without a usable 'text' text" in caplog.text and "d.jsonl:2: no field 'text'" in caplog.text


def test_a_file_without_the_text_field_or_with_a_broken_line_is_refused_naming_it(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"body": "a", "label": 0}) + "\n")
    with pytest.raises(DataError, match=r"no row has a usable 'text' text .*check the text field"):
        read_labeled(str(path), labels=LABELS)
    path.write_text(json.dumps({"text": "a", "label": 0}) + "\n{not json\n")
    with pytest.raises(DataError, match=r"d.jsonl:2: invalid_json"):
        read_labeled(str(path), labels=LABELS)
    path.write_text(json.dumps({"text": "a"}) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: missing 'label' label"):
        read_labeled(str(path), labels=LABELS)


def test_a_tsv_file_reads_like_a_csv_one(tmp_path):
    (tmp_path / "d.tsv").write_text('text\tlabel\n"tab\tinside"\thate\nplain one\tneither\n')
    data = read_labeled(str(tmp_path / "d.tsv"), labels=LABELS)
    assert data.texts == ["tab\tinside", "plain one"]
    np.testing.assert_array_equal(data.label_ids, [0, 2])


def test_mismatched_tweeteval_files_and_missing_inputs_fail(tmp_path):
    (tmp_path / "val_text.txt").write_text("a\nb\n")
    (tmp_path / "val_labels.txt").write_text("1\n")
    with pytest.raises(DataError, match="2 texts but"):
        read_labeled(str(tmp_path / "val_text.txt"))
    with pytest.raises(DataError, match="no such file"):
        read_labeled(str(tmp_path / "nothing-*.csv"))


def test_an_unknown_extension_or_format_names_the_labeled_formats(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("one text per line is the pipelines' format, not a labeled one\n")
    with pytest.raises(DataError, match="pass --format"):
        read_labeled(str(path))
    with pytest.raises(DataError, match="format must be one of"):
        read_labeled(str(path), format="text")
    assert "text" not in LABELED_FORMATS


def test_extra_fields_come_row_for_row_in_the_same_read_and_none_where_a_row_or_file_has_none(tmp_path):
    with open(tmp_path / "a.jsonl", "w") as f:
        f.write(json.dumps({"text": "you people are vermin", "label": "hate", "targets": "origin"}) + "\n")
        f.write(json.dumps({"text": "", "label": "hate", "targets": "race"}) + "\n")  # skipped with its cell
        f.write(json.dumps({"text": "have a nice day", "label": "neither"}) + "\n")
    (tmp_path / "train_text.txt").write_text("go away \n")
    (tmp_path / "train_labels.txt").write_text("0\n")
    (tmp_path / "mapping.txt").write_text("0\thate\n1\tneither\n")
    pattern = f"{tmp_path / 'a.jsonl'},{tmp_path / 'train_text.txt'}"
    data = read_labeled(pattern, labels=("hate", "neither"), extra_fields=("targets",))
    assert data.texts == ["you people are vermin", "have a nice day", "go away "]
    assert data.fields == {"targets": ["origin", None, None]}
    assert read_labeled(pattern, labels=("hate", "neither")).fields == {}
