"""The review sample's design on the DirectRunner, over synthetic scored blocks (no model): size, strata,
inclusion probabilities, determinism."""

from __future__ import annotations

import collections
import pathlib

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.model import ScoredBlock
from pipelines.options import ReviewSettings
from pipelines.sinks import WriteReviewSample, allocate, strata
from flaxmodel.records import RecordBlock

LABELS = ("hate", "offensive", "neither")
THRESHOLDS = {"hate": 0.5, "offensive": 0.7}
RECORDS, BLOCK = 12_000, 1_000


def synthetic_scores(n: int, seed: int = 0) -> np.ndarray:
    """Class probabilities of ``n`` records: mostly neither, some offensive, few hate."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3)) * 2.0 + np.array([-1.5, 0.0, 1.5])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def scored_blocks(n: int = RECORDS) -> list[ScoredBlock]:
    scores = synthetic_scores(n)
    blocks = []
    for start in range(0, n, BLOCK):
        part = scores[start : start + BLOCK]
        m = len(part)
        ids = [f"post-{i}" for i in range(start, start + m)]
        records = RecordBlock(f"shard-{start // BLOCK}.jsonl", np.arange(m), ids, [f"text of {i}" for i in ids], {})
        ones = np.ones(m, np.int32)
        truncated = np.zeros(m, bool)
        no_targets = np.zeros((m, 0), np.float32)
        blocks.append(ScoredBlock(records, part, part.argmax(axis=1), no_targets, ones * 5, ones, truncated, "tiny@x:float32"))
    return blocks


def _sample(tmp_path: pathlib.Path, settings: ReviewSettings, thresholds=THRESHOLDS) -> list[dict]:
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(scored_blocks())
            | WriteReviewSample(str(tmp_path), LABELS, thresholds, {}, (), settings)
        )
    files = sorted(tmp_path.glob("review-*.parquet"))
    assert files
    return pq.read_table(files).to_pylist()


def test_allocation_gives_every_stratum_a_share_and_sums_to_the_sample():
    sizes = {"flagged": 40, "near_threshold": 300, "label:neither": 10_000, "label:offensive": 1_500, "label:hate": 3}
    take = allocate(sizes, 500)
    assert sum(take.values()) == 500
    assert take["label:hate"] == 3 and take["flagged"] == 40  # small strata are taken whole
    assert all(take[s] <= sizes[s] for s in sizes)
    assert take["label:neither"] > take["label:offensive"] > take["near_threshold"] >= 50
    assert allocate({"a": 3, "b": 2}, 500) == {"a": 3, "b": 2}
    assert allocate({}, 10) == {}


def test_strata_put_near_threshold_first_then_flagged_then_top_label():
    scores = np.array([[0.52, 0.1, 0.38], [0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.05, 0.85, 0.1]], np.float32)
    expected = ["near_threshold", "flagged", "label:neither", "flagged"]
    assert strata(scores, LABELS, THRESHOLDS, 0.05).tolist() == expected
    assert strata(scores, LABELS, {}, 0.05).tolist() == ["label:hate", "label:hate", "label:neither", "label:offensive"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> list[dict]:
    return _sample(tmp_path_factory.mktemp("review"), ReviewSettings(review_sample=500, review_seed=3))


def test_sample_has_at_most_n_rows_with_stratum_and_known_inclusion_probability(sample):
    assert len(sample) == 500
    assert len({r["id"] for r in sample}) == 500
    scores = np.concatenate([b.scores for b in scored_blocks()])
    sizes = collections.Counter(strata(scores, LABELS, THRESHOLDS, 0.1).tolist())
    drawn = collections.Counter(r["review_reason"] for r in sample)
    assert drawn == allocate(sizes, 500)
    for row in sample:
        assert 0 < row["inclusion_probability"] <= 1
        assert row["inclusion_probability"] == pytest.approx(drawn[row["review_reason"]] / sizes[row["review_reason"]])
        assert row["text"] == f"text of {row['id']}"
        assert row["label"] == LABELS[int(np.argmax([row[c] for c in LABELS]))]


def test_the_same_run_gives_the_same_sample_and_another_seed_another(sample, tmp_path):
    again = _sample(tmp_path / "again", ReviewSettings(review_sample=500, review_seed=3))
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in sample)
    other = _sample(tmp_path / "other", ReviewSettings(review_sample=500, review_seed=4))
    assert len({r["id"] for r in other} & {r["id"] for r in sample}) < 250


def test_without_thresholds_only_the_label_strata_are_sampled(tmp_path):
    rows = _sample(tmp_path, ReviewSettings(review_sample=90), thresholds={})
    assert len(rows) == 90
    assert {r["review_reason"] for r in rows} == {"label:hate", "label:offensive", "label:neither"}
    assert all(r["flagged"] is None for r in rows)
