"""End to end with a tiny model: ``moderate --review_sample`` writes a deterministic weighted sample, and
``moderate-evaluate --reviewed`` turns its reviewed copy into whole-run estimates."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flaxmodel.inference.predictor import load_classifier
from pipelines import evaluate, moderate

RECORDS, SAMPLE = 300, 120
WORDS = ("cats", "dogs", "people", "the council", "rain", "idiots", "neighbours")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_checkpoint):
    """A labeled input file (each record's true label), the moderation flags, and the true labels by id."""
    folder = tmp_path_factory.mktemp("review-run")
    rng = np.random.default_rng(5)
    truth = {f"r{i}": ("hate", "offensive", "neither")[int(rng.integers(3))] for i in range(RECORDS)}
    texts = {i: f"post {n} about {WORDS[n % 7]} and {WORDS[(n * 3) % 7]} {'!' * (n % 4)}" for n, i in enumerate(truth)}
    (folder / "posts.jsonl").write_text("".join(json.dumps({"id": i, "text": texts[i]}) + "\n" for i in truth))
    model = str(tiny_checkpoint("bert"))
    hate = load_classifier(model, max_length=32, precision="float32").predict_proba(list(texts.values()))[:, 0]
    # The tiny random model's scores are close together: a threshold inside them and a narrow band.
    threshold, band = float(np.quantile(hate, 0.6)), float(np.quantile(hate, 0.65) - np.quantile(hate, 0.6))
    argv = [
        "--input", str(folder / "posts.jsonl"), "--id_field", "id", "--model", model,
        "--max_length", "32", "--stride", "8",
        "--precision", "float32", "--threshold", f"hate={threshold}", "--review_sample", str(SAMPLE),
        "--review_band", str(band), "--review_seed", "11",
    ]  # fmt: skip
    return folder, argv, truth


def _moderate(argv: list[str], output: pathlib.Path) -> pa.Table:
    assert moderate.main([*argv, "--output", str(output)]) == 0
    assert not list(output.glob("_attempt-*")), "the review sample is committed with the other outputs"
    return pq.read_table(sorted(output.glob("review-*.parquet")))


def test_review_sample_and_reviewed_estimates_end_to_end(run, tmp_path, capsys):
    folder, argv, truth = run
    sample = _moderate(argv, tmp_path / "first")
    assert 0 < sample.num_rows <= SAMPLE
    rows = sample.to_pylist()
    assert {r["review_reason"] for r in rows} >= {"near_threshold", "flagged"}
    assert all(0 < r["inclusion_probability"] <= 1 and r["text"] for r in rows)
    again = _moderate(argv, tmp_path / "second")
    assert sorted(again.column("id").to_pylist()) == sorted(r["id"] for r in rows)

    # Reviewers label the sample (here: the input's true labels), leaving a few rows unreviewed.
    human = [truth[r["id"]] if n % 10 else None for n, r in enumerate(rows)]
    reviewed = sample.append_column("human_label", pa.array(human, pa.string()))
    pq.write_table(reviewed, tmp_path / "reviewed.parquet")
    out = tmp_path / "estimates"
    assert evaluate.main(["--reviewed", str(tmp_path / "reviewed.parquet"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "flagged precision" in printed and "more would halve the interval" in printed
    report = json.loads((out / "review_estimates.json").read_text())
    assert report["run_records"] == RECORDS and report["reviewed"] == sum(h is not None for h in human)

    labels = pq.read_table(sorted((tmp_path / "first").glob("labels-*.parquet"))).to_pylist()
    flagged = [r for r in labels if r["flagged"]]
    true_precision = sum(truth[r["id"]] != "neither" for r in flagged) / len(flagged)
    low, high = report["flagged"]["precision"]["ci95"]
    assert low <= true_precision <= high
    true_share = sum(t == "hate" for t in truth.values()) / RECORDS
    low, high = report["label_distribution"]["hate"]["ci95"]
    assert low <= true_share <= high


def test_reviewed_file_problems_fail_with_exit_2(run, tmp_path, capsys):
    _, argv, _ = run
    sample = _moderate(argv, tmp_path / "run")
    pq.write_table(sample, tmp_path / "unreviewed.parquet")
    assert evaluate.main(["--reviewed", str(tmp_path / "unreviewed.parquet"), "--output", str(tmp_path / "o")]) == 2
    assert "lacks column(s) human_label" in capsys.readouterr().err
    typo = sample.append_column("human_label", pa.array(["hateful"] * sample.num_rows, pa.string()))
    pq.write_table(typo, tmp_path / "typo.parquet")
    assert evaluate.main(["--reviewed", str(tmp_path / "typo.parquet"), "--output", str(tmp_path / "o")]) == 2
    assert "'hateful', not one of ['hate', 'offensive', 'neither']" in capsys.readouterr().err
    assert not (tmp_path / "o" / "review_estimates.json").exists()


def test_bad_review_flags_fail_before_any_data_is_read(run, tmp_path, capsys):
    _, argv, _ = run
    assert moderate.main([*argv, "--output", str(tmp_path / "o"), "--review_sample", "-5"]) == 2
    assert "--review_sample -5" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
