"""``moderate-adapt`` as a user runs it, on the tiny model: the whole review loop, and its one-line errors.

The loop: ``moderate --review_sample`` -> reviewers label the sample in their policy's own names ->
``moderate-evaluate --reviewed --label_map`` -> ``moderate-adapt --reviewed --label_map`` -> ``moderate --model DIR``.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import adapt, evaluate, moderate
from tests.pipelines.test_review_sample import RECORDS, _moderate, run  # noqa: F401 (the fixture)

POLICY = "harmful=hate|offensive,fine=neither"
THEIRS = {"hate": "harmful", "offensive": "harmful", "neither": "fine"}
QUICK = ["--epochs", "1", "--learning_rates", "0.01", "--max_length", "32", "--batch_size", "16", "--anchors", "0", "--folds", "2", "--quiet"]


def _one_error_line(err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moderate-adapt: error: ") and message in lines[0], err


@pytest.fixture(scope="module")
def reviewed(run, tmp_path_factory):
    """The run's review sample labelled by reviewers in the policy's names (every tenth row left unreviewed)."""
    folder, argv, truth = run
    work = tmp_path_factory.mktemp("loop")
    sample = _moderate(argv, work / "run")
    rows = sample.to_pylist()
    human = [THEIRS[truth[r["id"]]] if n % 10 else None for n, r in enumerate(rows)]
    pq.write_table(sample.append_column("human_label", pa.array(human, pa.string())), work / "reviewed.parquet")
    return work, argv, truth


def test_reviewed_estimates_in_the_policys_names(reviewed, capsys):
    work, _, truth = reviewed
    out = work / "estimates"
    assert evaluate.main(["--reviewed", str(work / "reviewed.parquet"), "--output", str(out), "--label_map", POLICY]) == 0
    report = json.loads((out / "review_estimates.json").read_text())
    assert report["labels"] == ["harmful", "fine"] and "harmful precision" in capsys.readouterr().out
    # The whole run's true accuracy in their names, from every record's label: inside the interval.
    labels = pq.read_table(sorted((work / "run").glob("labels-*.parquet"))).to_pylist()
    true_accuracy = sum(THEIRS[r["label"]] == THEIRS[truth[r["id"]]] for r in labels) / RECORDS
    low, high = report["accuracy"]["ci95"]
    assert low <= true_accuracy <= high
    # Without the map, the policy's names are not the model's labels: one line saying so.
    assert evaluate.main(["--reviewed", str(work / "reviewed.parquet"), "--output", str(work / "e2")]) == 2
    assert "or map it with --label_map" in capsys.readouterr().err


def test_adapting_on_the_reviewed_sample_gives_a_folder_the_job_runs(reviewed, tmp_path, capsys):
    work, argv, _ = reviewed
    model = tmp_path / "adapted"
    argv_adapt = ["--model", argv[argv.index("--model") + 1], "--reviewed", str(work / "reviewed.parquet")]
    assert adapt.main([*argv_adapt, "--label_map", POLICY, "--output", str(model), *QUICK]) == 0
    printed = capsys.readouterr().out
    assert "harmful precision" in printed and "learning curve" in printed
    report = json.loads((model / "adapt_report.json").read_text())
    assert set(report) >= {"before", "after", "learning_curve", "thresholds", "selection"}
    assert [p["share"] for p in report["learning_curve"]] == [0.25, 0.5, 1.0]
    assert report["data"]["kind"] == "reviewed" and report["data"]["run_records"] == RECORDS
    assert "| harmful precision |" in (model / "README.md").read_text()
    assert json.loads((model / "training_data.json").read_text())["adapt"]["label_map"] == {"harmful": ["hate", "offensive"], "fine": ["neither"]}
    # The same job on the adapted folder, with the thresholds it recommends.
    with_model = argv[: argv.index("--threshold")]
    with_model[with_model.index("--model") + 1] = str(model)
    assert moderate.main([*with_model, "--output", str(tmp_path / "again")]) == 0
    assert pq.read_table(sorted((tmp_path / "again").glob("labels-*.parquet"))).num_rows == RECORDS


def test_bad_rows_fail_with_one_line_before_training(reviewed, tmp_path, capsys):
    work, argv, _ = reviewed
    model = argv[argv.index("--model") + 1]
    common = ["--model", model, "--output", str(tmp_path / "o"), *QUICK]
    (tmp_path / "typo.csv").write_text("text,label\nhello there,harmful\nnice day,fien\nok then,fine\n")
    assert adapt.main([*common, "--train", str(tmp_path / "typo.csv"), "--label_map", POLICY]) == 2
    _one_error_line(capsys.readouterr().err, "tmp/")  # names the file and line of the unknown label
    (tmp_path / "empty.csv").write_text("text,label\n")
    assert adapt.main([*common, "--train", str(tmp_path / "empty.csv"), "--label_map", POLICY]) == 2
    _one_error_line(capsys.readouterr().err, "no labeled rows")
    unreviewed = pq.read_table(work / "reviewed.parquet").drop(["human_label"])
    pq.write_table(unreviewed.append_column("human_label", pa.array([None] * unreviewed.num_rows, pa.string())), tmp_path / "none.parquet")
    assert adapt.main([*common, "--reviewed", str(tmp_path / "none.parquet"), "--label_map", POLICY]) == 2
    _one_error_line(capsys.readouterr().err, "no row has a human_label")
    assert adapt.main([*common, "--train", str(tmp_path / "typo.csv"), "--label_map", "harmful=hateful"]) == 2
    _one_error_line(capsys.readouterr().err, "no class 'hateful'")
    assert not (tmp_path / "o").exists()


def test_flags_come_from_the_settings_with_typo_hints(capsys):
    with pytest.raises(SystemExit) as done:
        adapt.main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert "--label_map" in shown and "--precision_target" in shown and "--new_head" in shown
    assert adapt.main(["--output", "x", "--train", "y", "--label_mapp", "a=hate"]) == 2
    _one_error_line(capsys.readouterr().err, "did you mean --label_map?")
