"""``--precision`` reaches the workers' model, and the ``model`` column and the run summary say which path ran."""

from __future__ import annotations

import json
import pathlib

import pyarrow.parquet as pq
import pytest

from flaxmodel import load_classifier
from pipelines import moderate
from pipelines.sinks import Summary
from pipelines.options import ClassifySettings, ModerationOptions

POSTS = ("You are great!", "what a lovely day", "go away, you are not welcome here")


def test_precision_flag_reaches_the_model_the_model_column_and_the_summary(tmp_path, tiny_checkpoint, capsys):
    folder = str(tiny_checkpoint("bert"))
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"text": t}) + "\n" for t in POSTS))
    out = tmp_path / "out"
    argv = ["--input", str(posts), "--output", str(out), "--model", folder, "--max_length", "24", "--stride", "8"]
    argv += ["--precision", "int8"]
    assert moderate.main(argv) == 0
    rows = pq.read_table(sorted(out.glob("labels-*.parquet"))).to_pylist()
    weights_hash = load_classifier(folder, precision="float32").weights_hash
    identity = f"{pathlib.Path(folder).name}@{weights_hash}:int8"
    assert {r["model"] for r in rows} == {identity}
    assert len(rows) == len(POSTS)
    assert f"model: {identity} ({len(POSTS)} records)" in capsys.readouterr().out


def test_precision_is_one_classify_setting_and_an_unknown_one_is_refused():
    settings = ClassifySettings.from_options(ModerationOptions(["--precision", "bfloat16"]))
    assert settings.precision == "bfloat16"
    assert ClassifySettings.from_options(ModerationOptions([])).precision == "auto"
    assert not hasattr(settings, "dtype")
    with pytest.raises(SystemExit):
        ModerationOptions(["--precision", "float16"]).view_as(ModerationOptions)


def test_summary_lists_the_records_of_each_model_identity_the_workers_ran():
    counters = {"records_read": 4, "labeled": 4, "model:m@0:float32": 3, "model:m@0:int8": 1, "model:m@0:bfloat16": 0}
    text = Summary(counters, 0, 1.0, ("a",), devices={"cpu": 2}).render()
    assert "model: m@0:float32 (3 records)\nmodel: m@0:int8 (1 records)" in text
    assert "bfloat16" not in text
    assert "devices: 2 (cpu)" in text


def test_two_auto_runs_on_one_machine_type_choose_the_same_path_and_write_identical_labels(
    tmp_path, tiny_checkpoint, capsys, monkeypatch
):
    from flaxmodel.inference import predictor  # the worker's CPU and timer, patched for this in-process run

    monkeypatch.setattr(predictor, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16", "avx512_vnni"}))
    monkeypatch.setattr(predictor, "time_call", lambda name, run: {"float32": 1.0, "bfloat16": 0.8, "int8": 0.5}[name])
    posts = tmp_path / "posts.jsonl"
    texts = [f"{text} {i}" for i, text in enumerate(POSTS * 20)]
    posts.write_text("".join(json.dumps({"text": t, "id": str(i)}) + "\n" for i, t in enumerate(texts)))
    calibration = tmp_path / "calibration"
    argv = ["--input", str(posts), "--model", str(tiny_checkpoint("bert")), "--max_length", "24", "--stride", "8"]
    argv += ["--id_field", "id", "--precision", "auto", "--calibration_cache_dir", str(calibration)]

    assert moderate.main([*argv, "--output", str(tmp_path / "first")]) == 0
    first = capsys.readouterr().out
    assert f"precision choice: measured now (auto timed the paths at load) ({len(texts)} records)" in first
    assert len(list(calibration.glob("calibration-*.json"))) == 1

    def never(name, run):
        raise AssertionError("the second run must reuse the stored choice, not time the paths again")

    monkeypatch.setattr(predictor, "time_call", never)
    assert moderate.main([*argv, "--output", str(tmp_path / "second")]) == 0
    second = capsys.readouterr().out
    assert "precision choice: reused" in second and "measured" not in second

    def labels(run: str):
        return pq.read_table(sorted((tmp_path / run).glob("labels-*.parquet"))).sort_by("id")

    assert labels("first").num_rows == len(texts)
    assert labels("second").equals(labels("first"))
    assert {m.split(":")[-1] for m in labels("first").column("model").to_pylist()} == {"int8"}


def test_the_calibration_store_defaults_to_a_folder_in_the_compilation_cache():
    from pipelines.model import RunSettings

    assert RunSettings().calibration_dir is None
    assert RunSettings(compilation_cache_dir="gs://b/jax/").calibration_dir == "gs://b/jax/calibration"
    assert RunSettings(compilation_cache_dir="/c", calibration_cache_dir="/k").calibration_dir == "/k"
