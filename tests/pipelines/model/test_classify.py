"""Classification settings refused before reading data, window aggregation, and identical texts
scored once."""

from __future__ import annotations

import json
import shutil

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that

from flaxmodel import ModelRef, OptionError, load_classifier
from pipelines.model import ClassifyRecords, aggregate_windows
from pipelines.names import NAMESPACE
from pipelines.options import ClassifySettings
from flaxmodel.records import RecordBlock
from tests.fixtures import LONG_TEXTS, TEXTS, minilm_shaped_config

SPEC = ModelRef(
    path="m",
    name="m",
    config=minilm_shaped_config(("a", "b")),
    max_length=128,
    content_length=126,
    weights_hash="0" * 16,
)


def test_window_scores_aggregate_per_text_by_max_or_mean():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]], np.float32)
    offsets = np.array([0, 2, 3])  # text 0: windows 0-1, text 1: window 2
    np.testing.assert_allclose(aggregate_windows(probabilities, offsets, "max"), [[0.9, 0.8], [0.3, 0.7]])
    np.testing.assert_allclose(aggregate_windows(probabilities, offsets, "mean"), [[0.55, 0.45], [0.3, 0.7]])


@pytest.mark.parametrize(
    "settings, message",
    [
        (ClassifySettings(stride=126), "--stride 126"),
        (ClassifySettings(stride=-1), "--stride -1"),
        (ClassifySettings(max_windows=0), "--max_windows"),
        (ClassifySettings(batch_size=8), "--max_windows 16"),
        (ClassifySettings(batch_size=-1), "--batch_size"),
        (ClassifySettings(max_batch_tokens=-1), "--max_batch_tokens"),
        (ClassifySettings(aggregate="median"), "--aggregate median"),
        (ClassifySettings(sort_buffer=0), "--sort_buffer"),
    ],
)
def test_settings_that_cannot_work_fail_at_construction(settings, message):
    with pytest.raises(OptionError, match=message):
        ClassifyRecords(settings, model=SPEC)


def test_a_bad_model_folder_fails_at_construction(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ClassifyRecords(ClassifySettings(model=str(tmp_path / "missing")))


def test_a_research_model_says_so_when_the_job_is_built(model_dir, tmp_path, caplog):
    # The session's model folder has no training_data.json: its use is undeclared, and nothing is said.
    with caplog.at_level("WARNING", logger="pipelines.model.classify"):
        assert ClassifyRecords(ClassifySettings(model=model_dir)).model.use == "undeclared"
    assert not caplog.records
    research = tmp_path / "research"
    shutil.copytree(model_dir, research)
    (research / "training_data.json").write_text(json.dumps({"use": "research", "sources": []}))
    with caplog.at_level("WARNING", logger="pipelines.model.classify"):
        assert ClassifyRecords(ClassifySettings(model=str(research))).model.research_only
    assert "research model" in caplog.text and "research use only" in caplog.text


def test_identical_texts_in_a_block_are_scored_once_into_the_rows_of_computing_each(model_dir):
    texts = [f"{TEXTS[i % 4]}" for i in range(10)] + list(LONG_TEXTS[:1]) * 2  # 6 + 1 texts reused
    ids = [f"f:{i}" for i in range(len(texts))]
    classifier = load_classifier(model_dir, max_length=32)
    each = classifier.tokenizer.encode_windows(texts, 8, 4)
    # Each record computed on its own; only plain data, since Beam pickles the check.
    expected = {i: (classifier.predict_ids(w.ids).max(axis=0).tolist(), len(w.ids)) for i, w in zip(ids, each)}
    twin = {record_id: ids[texts.index(text)] for record_id, text in zip(ids, texts)}

    def check(rows) -> None:
        by_id = {record_id: (scores, windows) for record_id, scores, windows in rows}
        assert sorted(by_id) == sorted(ids)
        for record_id, (scores, num_windows) in by_id.items():
            assert num_windows == expected[record_id][1]
            np.testing.assert_allclose(scores, expected[record_id][0], atol=1e-5)
            assert scores == by_id[twin[record_id]][0]  # a reused text's row is its first occurrence's, exactly

    settings = ClassifySettings(model=model_dir, max_length=32, stride=8, max_windows=4)
    pipeline = beam.Pipeline()
    block = RecordBlock("f", np.arange(len(texts)), ids, texts, {})
    scored, _ = pipeline | beam.Create([block], reshuffle=False) | ClassifyRecords(settings)
    rows = scored | beam.FlatMap(lambda b: zip(b.records.ids, b.scores.tolist(), b.num_windows.tolist()))
    assert_that(rows, check)
    result = pipeline.run()
    result.wait_until_finish()
    (reused,) = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name("reused_texts"))["counters"]
    assert reused.committed == 7
