"""Target groups through the jobs: label rows and the review sample carry ``target_*`` and ``targets``
exactly as the model scores them, and the evaluation job scores ``targets`` per group."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from flaxmodel.inference.predictor import load_classifier
from pipelines import evaluate, moderate
from tests.fixtures import add_target_head
from tests.pipelines.conftest import MAX_LENGTH, STRIDE

CATEGORIES = ("race", "religion", "gender")
TEXTS = (
    "you are a wonderful person",
    "go back to where you came from",
    "all of them should be banned",
    "the game starts at eight",
    "women should not be allowed to vote",
    "that religion is a disease",
    "great match last night",
    "I can't stand these people",
)


@pytest.fixture(scope="module")
def targeted_model(model_dir, tmp_path_factory):
    folder = shutil.copytree(model_dir, tmp_path_factory.mktemp("targeted") / "model")
    # Threshold 0.5 on random weights: some texts name groups and some do not.
    add_target_head(folder, CATEGORIES, hidden=16, seed=3)
    return str(folder)


@pytest.fixture(scope="module")
def posts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("posts")
    with open(folder / "posts.jsonl", "w") as f:
        for i, text in enumerate(TEXTS):
            f.write(json.dumps({"id": f"p{i}", "text": text, "label": "hate" if i % 2 else "neither", "targets": "|".join(CATEGORIES[: i % 3])}) + "\n")
    return folder


def _common(model: str, cache: str) -> list[str]:
    return ["--model", model, "--max_length", str(MAX_LENGTH), "--stride", str(STRIDE), "--precision", "float32", "--compilation_cache_dir", cache]


def test_label_rows_and_the_review_sample_carry_the_target_groups(targeted_model, posts, compilation_cache, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--input", str(posts / "*.jsonl"), "--output", str(out), "--id_field", "id", "--review_sample", "4"]
    assert moderate.main([*argv, *_common(targeted_model, compilation_cache)]) == 0
    summary = capsys.readouterr().out
    rows = pq.read_table(sorted(out.glob("labels-*.parquet"))).sort_by("id").to_pylist()
    # The summary (from the Beam counters targets_<group>) counts the records naming each group.
    named = {c: sum(c in r["targets"] for r in rows) for c in CATEGORIES}
    line = next(l for l in summary.splitlines() if l.startswith("target groups named: "))
    assert {p.rsplit(" ", 1)[0]: int(p.rsplit(" ", 1)[1]) for p in line.split(": ", 1)[1].split(", ")} == {
        c: n for c, n in named.items() if n
    }
    classifier = load_classifier(targeted_model, max_length=MAX_LENGTH, precision="float32")
    expected = classifier.predict_targets(list(TEXTS))
    for row, scores in zip(rows, expected):
        np.testing.assert_allclose([row[f"target_{c}"] for c in CATEGORIES], scores, atol=1e-5)
        assert row["targets"] == [c for c, s in zip(CATEGORIES, scores) if s >= 0.5]
    assert any(r["targets"] for r in rows) and not all(r["targets"] for r in rows)
    review = pq.read_table(sorted(out.glob("review-*.parquet"))).to_pylist()
    assert review and all(r["targets"] == next(x for x in rows if x["id"] == r["id"])["targets"] for r in review)


def test_a_model_without_a_head_writes_no_target_columns(model_dir, posts, compilation_cache, tmp_path):
    out = tmp_path / "out"
    assert moderate.main(["--input", str(posts / "*.jsonl"), "--output", str(out), *_common(model_dir, compilation_cache)]) == 0
    names = pq.read_schema(next(out.glob("labels-*.parquet"))).names
    assert "targets" not in names and not [n for n in names if n.startswith("target_")]


def test_evaluation_scores_the_targets_per_group(targeted_model, posts, compilation_cache, tmp_path, capsys):
    out = tmp_path / "eval"
    # One record names a group the model has no category for: an invalid_label dead letter, not a crash.
    with open(posts / "odd.jsonl", "w") as f:
        f.write(json.dumps({"text": "a post", "label": "neither", "targets": "martians"}) + "\n")
    try:
        argv = ["--input", str(posts / "*.jsonl"), "--output", str(out), "--max_dead_letter_fraction", "0.2"]
        argv += _common(targeted_model, compilation_cache)
        assert evaluate.main(argv) == 0
    finally:
        (posts / "odd.jsonl").unlink()
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    classifier = load_classifier(targeted_model, max_length=MAX_LENGTH, precision="float32")
    named = classifier.predict_targets(list(TEXTS)) >= 0.5
    truth = np.array([[c in CATEGORIES[: i % 3] for c in CATEGORIES] for i in range(len(TEXTS))])
    targets = report["targets"]
    assert targets["rows"] == len(TEXTS) and targets["thresholds"] == {c: 0.5 for c in CATEGORIES}
    for j, c in enumerate(CATEGORIES):
        tp, flagged, support = (truth[:, j] & named[:, j]).sum(), named[:, j].sum(), truth[:, j].sum()
        f1 = 2 * tp / (flagged + support) if flagged + support else 0.0
        assert targets["per_target"][c]["f1"] == pytest.approx(f1) and targets["per_target"][c]["support"] == support
    assert report["dead_letters"]["by_reason"] == {"invalid_label": 1}
