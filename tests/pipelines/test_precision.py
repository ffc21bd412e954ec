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
