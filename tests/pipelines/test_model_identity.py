"""One model identity per run: resolved once at launch from files, weights and tokenizer loaded once per
worker process, and every output naming the model as the worker ran it."""

from __future__ import annotations

import json
import pathlib

import pyarrow.parquet as pq
import pytest

from flaxmodel.inference import calibration, predictor, tokenizer
from pipelines import evaluate, moderate

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "posts.jsonl"


def _counting(monkeypatch, module, name: str) -> list:
    calls: list = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_the_bundled_sample_loads_the_weights_and_builds_the_tokenizer_once(tmp_path, monkeypatch, capsys):
    tokenizer._cached_encoder.cache_clear()
    weight_loads = _counting(monkeypatch, predictor, "load_checkpoint")
    tokenizer_builds = _counting(monkeypatch, tokenizer, "load_tokenizer")
    out = tmp_path / "out"
    argv = ["--input", str(SAMPLE), "--output", str(out), "--precision", "float32"]
    assert moderate.main(argv) == 0
    assert "read = labeled + dead-lettered OK" in capsys.readouterr().out
    # The launcher, the tokenizing step and the model handler of this one process share both.
    assert len(weight_loads) == 1
    assert len(tokenizer_builds) == 1


def test_a_bad_model_fails_at_launch_from_its_files_alone(tmp_path, monkeypatch, capsys):
    weight_loads = _counting(monkeypatch, predictor, "load_checkpoint")
    out = tmp_path / "out"
    argv = ["--input", str(SAMPLE), "--output", str(out), "--model", str(tmp_path / "missing")]
    assert moderate.main(argv) == 2
    assert "checkpoint folder does not exist" in capsys.readouterr().err
    assert not weight_loads and not out.exists()


@pytest.fixture
def workers_choose_bfloat16(monkeypatch):
    """The worker's ``auto`` calibration, stubbed to pick bfloat16 (the launcher, which loads no weights, picks
    nothing; before, it ran its own calibration and reported that choice)."""

    def calibrate(runners, **_):
        assert "bfloat16" in runners
        return calibration.Calibration("bfloat16", {"float32": 2.0, "bfloat16": 1.0}, {"float32": 0.0, "bfloat16": 0.0})

    monkeypatch.setattr(predictor, "cpu_candidates", lambda flags: ("float32", "bfloat16"))
    monkeypatch.setattr(predictor, "calibrate", calibrate)


def test_the_evaluation_report_names_the_identity_its_rows_carry(
    workers_choose_bfloat16, tiny_checkpoint, tmp_path, capsys
):
    model = str(tiny_checkpoint("bert"))
    labeled = tmp_path / "labeled.jsonl"
    texts = ("you are great", "go away", "lovely day", "nobody asked you")
    labeled.write_text("".join(json.dumps({"text": t, "label": i % 3}) + "\n" for i, t in enumerate(texts)))
    common = ["--input", str(labeled), "--model", model, "--max_length", "24", "--stride", "8", "--precision", "auto"]

    assert moderate.main([*common, "--output", str(tmp_path / "labels")]) == 0
    rows = pq.read_table(sorted((tmp_path / "labels").glob("labels-*.parquet"))).to_pylist()
    (identity,) = {row["model"] for row in rows}
    assert identity.endswith(":bfloat16")
    assert f"model: {identity} ({len(texts)} records)" in capsys.readouterr().out

    assert evaluate.main([*common, "--output", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["model"] == identity
    assert report["models"] == {identity: len(texts)}
