"""``benchmarks.model_cost``: two models timed in one run, each against the first, with what each ran."""

from __future__ import annotations

import json

import pytest

from benchmarks import harness, model_cost
from tests.fixtures import TEXTS


def test_two_models_get_their_rates_and_the_second_its_cost_against_the_first(tiny_checkpoint, tmp_path, monkeypatch):
    log = tmp_path / "README.md"
    log.write_text("| results |\n")
    monkeypatch.setattr(harness, "README", log)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS * 4) + "\n")
    small = str(tiny_checkpoint("bert"))
    larger = str(tiny_checkpoint("bert", num_hidden_layers=4))
    result = model_cost.main(
        ["--models", f"{small},{larger}", "--texts", str(texts), "--json", str(tmp_path / "cost.json"),
         "--batch_size", "8", "--repeats", "1", "--precision", "float32", "--max_length", "32"]
    )
    assert json.loads((tmp_path / "cost.json").read_text())["baseline"] == small
    first, second = result["models"][small], result["models"][larger]
    assert first["cost_vs_baseline"] == 1.0
    assert second["cost_vs_baseline"] == pytest.approx(first["texts_per_s"] / second["texts_per_s"])
    assert second["gflops_per_text_at_median"] > first["gflops_per_text_at_median"] > 0
    assert first["precision"] == second["precision"] == "float32"
    assert "model cost" in log.read_text() and "x1.00 cost" in log.read_text()


def test_one_model_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        model_cost.main(["--models", "only-one", "--texts", "t.txt", "--json", str(tmp_path / "x.json")])
    assert "at least two folders" in capsys.readouterr().err
