"""The evaluation pipeline end to end on the DirectRunner: report, confusion matrix, thresholds, dead letters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flaxmodel.inference.metrics import confusion_matrix, scores, thresholds_for_precision
from flaxmodel.inference.predictor import load_classifier
from pipelines import evaluate
from tests.pipelines.conftest import LABELS, MAX_LENGTH, STRIDE

TEXTS = (
    "you are a wonderful person",
    "what a lovely morning",
    "shut up you idiot",
    "I can't stand these people",
    "thanks for the help yesterday",
    "this is the worst service ever",
    "go back to where you came from",
    "the game starts at eight",
    "nobody cares about your opinion",
    "happy birthday to my sister",
    "all of them should be banned",
    "great match last night",
)


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, model_dir):
    """Two shards (JSONL with label ids, CSV with label names) with a known share of wrong labels."""
    classifier = load_classifier(model_dir, max_length=MAX_LENGTH)
    probabilities = classifier.predict_proba(TEXTS)
    predicted = probabilities.argmax(axis=1)
    # Every third record gets a label the model does not predict: a known confusion.
    true = np.array([(p + 1) % 3 if i % 3 == 0 else p for i, p in enumerate(predicted)])
    folder = tmp_path_factory.mktemp("labeled")
    half = len(TEXTS) // 2
    with open(folder / "a.jsonl", "w") as f:
        for text, label in zip(TEXTS[:half], true[:half]):
            f.write(json.dumps({"text": text, "label": int(label)}) + "\n")
        f.write(json.dumps({"text": "no label here"}) + "\n")
        f.write(json.dumps({"text": "", "label": 1}) + "\n")
    with open(folder / "b.csv", "w") as f:
        f.write("text,label\n")
        for text, label in zip(TEXTS[half:], true[half:]):
            f.write(f'"{text}",{LABELS[label]}\n')
        f.write("an unknown label,spam\n")
    return folder, true, probabilities


@pytest.fixture(scope="module")
def report_dir(labeled, model_dir, compilation_cache, tmp_path_factory):
    folder, _, _ = labeled
    output = tmp_path_factory.mktemp("evaluation")
    argv = [
        "--input", str(folder / "*"),
        "--output", str(output),
        "--model", model_dir,
        "--max_length", str(MAX_LENGTH),
        "--stride", str(STRIDE),
        "--target_precision", "0.75",
        "--compilation_cache_dir", compilation_cache,
        "--max_dead_letter_fraction", "0.5",  # 3 of the 15 records are bad on purpose
    ]  # fmt: skip
    assert evaluate.main(argv) == 0
    return output


def test_report_metrics_match_the_models_own_predictions(report_dir, labeled):
    _, true, probabilities = labeled
    report = json.loads((report_dir / "report.json").read_text())
    expected = scores(confusion_matrix(true, probabilities.argmax(axis=1), len(LABELS)), LABELS)
    assert report["labels"] == list(LABELS)
    assert report["confusion_matrix"] == expected["confusion_matrix"]
    assert report["num_examples"] == len(TEXTS)
    assert report["accuracy"] == pytest.approx(8 / 12)
    for key in ("macro_f1", "weighted_f1"):
        assert report[key] == pytest.approx(expected[key])
    for name in LABELS:
        assert report["per_class"][name] == pytest.approx(expected["per_class"][name])


def test_report_suggests_thresholds_for_the_target_precision(report_dir, labeled):
    _, true, probabilities = labeled
    report = json.loads((report_dir / "report.json").read_text())
    assert report["target_precision"] == 0.75
    expected = thresholds_for_precision(true, probabilities, LABELS, 0.75)
    for name in LABELS:
        got, want = report["thresholds"][name], expected[name]
        assert got["flagged"] == want["flagged"]
        if want["threshold"] is not None:
            assert got["threshold"] == pytest.approx(want["threshold"], abs=1e-5)
            assert got["precision"] >= 0.75


def test_records_without_a_usable_label_or_text_are_counted_dead_letters(report_dir):
    import pyarrow.parquet as pq

    report = json.loads((report_dir / "report.json").read_text())
    assert report["dead_letters"] == {"total": 3, "by_reason": {"empty_text": 1, "invalid_label": 2}}
    rows = pq.read_table(sorted(report_dir.glob("dead_letter-*.parquet"))).to_pylist()
    assert sorted(r["reason"] for r in rows) == ["empty_text", "invalid_label", "invalid_label"]


def test_confusion_matrix_image_is_written(report_dir):
    assert (report_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--target_precision", "1.5"], "--target_precision"),
        (["--label_field", "text"], "--label_field"),
    ],
)
def test_bad_flags_fail_before_reading(labeled, model_dir, tmp_path, capsys, flags, message):
    folder, _, _ = labeled
    argv = ["--input", str(folder / "*"), "--output", str(tmp_path / "out"), "--model", model_dir, *flags]
    assert evaluate.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_partial_labels_and_groups_are_scored_per_value(labeled, model_dir, compilation_cache, tmp_path):
    _, _, probabilities = labeled
    predicted = probabilities.argmax(axis=1)
    # Source "a" labels exactly; source "b" only says "not <the predicted class>" half the time.
    rows, allowed = [], np.zeros((len(TEXTS), len(LABELS)), bool)
    for i, text in enumerate(TEXTS):
        if i % 2 == 0:
            label, allowed[i, predicted[i]] = LABELS[predicted[i]], True
        else:
            others = [LABELS[c] for c in range(len(LABELS)) if c != predicted[i] or i % 4 == 1]
            label = "|".join(others)
            allowed[i, [LABELS.index(o) for o in others]] = True
        rows.append({"text": text, "label": label, "source": "a" if i % 2 == 0 else "b"})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = [
        "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--model", model_dir,
        "--max_length", str(MAX_LENGTH), "--stride", str(STRIDE), "--group_by", "source",
        "--compilation_cache_dir", compilation_cache,
    ]  # fmt: skip
    assert evaluate.main(argv) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    correct = allowed[np.arange(len(TEXTS)), predicted]
    assert report["all_rows"]["accuracy"] == pytest.approx(correct.mean())
    by_source = report["groups"]["source"]
    assert by_source["a"]["accuracy"] == 1.0 and by_source["a"]["num_examples"] == 6
    assert by_source["b"]["accuracy"] == pytest.approx(correct[1::2].mean())
    # The full per-class report covers the records with one true class only.
    assert report["num_examples"] == 6


def test_a_policys_own_label_names_score_through_the_label_map(model_dir, compilation_cache, tmp_path):
    classifier = load_classifier(model_dir, max_length=MAX_LENGTH)
    top = classifier.predict_proba(TEXTS).argmax(axis=1)
    theirs = ["ok" if i % 4 == 0 else "harmful" for i in range(len(TEXTS))]
    rows = "".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in zip(TEXTS, theirs))
    (tmp_path / "policy.jsonl").write_text(rows + json.dumps({"text": "a typo", "label": "harmfull"}) + "\n")
    argv = [
        "--input", str(tmp_path / "policy.jsonl"), "--output", str(tmp_path / "out"), "--model", model_dir,
        "--max_length", str(MAX_LENGTH), "--stride", str(STRIDE), "--compilation_cache_dir", compilation_cache,
        "--label_map", "harmful=hate|offensive,ok=neither", "--max_dead_letter_fraction", "0.5",
    ]  # fmt: skip
    assert evaluate.main(argv) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    # A record is right when its top class is one the policy's label allows.
    allowed = {"harmful": (0, 1), "ok": (2,)}
    expected = np.mean([top[i] in allowed[label] for i, label in enumerate(theirs)])
    assert report["all_rows"]["accuracy"] == pytest.approx(expected)
    assert report["dead_letters"] == {"total": 1, "by_reason": {"invalid_label": 1}}
