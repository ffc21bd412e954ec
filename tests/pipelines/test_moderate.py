"""End to end: the moderation CLI on the DirectRunner over shards of every format and every bad kind."""

from __future__ import annotations

import pathlib

import numpy as np
import pyarrow.parquet as pq
import pytest

from flaxmodel.inference.predictor import Classifier, load_classifier
from pipelines import moderate
from pipelines.sinks import DEAD_LETTER_SCHEMA, labels_schema
from tests.pipelines.conftest import LABELS, MAX_LENGTH, MAX_WINDOWS, STRIDE, Shards

THRESHOLD = 0.4
MULTI_PROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _argv(shards: Shards, output: pathlib.Path, model_dir: str, cache: str) -> list[str]:
    return [
        "--input", shards.pattern,
        "--output", str(output),
        "--model", model_dir,
        "--max_length", str(MAX_LENGTH),
        "--stride", str(STRIDE),
        "--max_windows", str(MAX_WINDOWS),
        "--keep_text",
        "--keep_fields", "lang",
        "--threshold", f"hate={THRESHOLD}",
        # The shards hold every kind of bad record on purpose: most of them are dead letters.
        "--max_dead_letter_fraction", "1",
        "--compilation_cache_dir", cache,
        # Every run and the direct reference pinned to one path: `auto` times the paths a CPU has
        # instructions for (bfloat16, int8), so each worker process may pick its own.
        "--precision", "float32",
    ]  # fmt: skip


def _read(output: pathlib.Path, name: str):
    files = sorted(output.glob(f"{name}-*.parquet"))
    assert files, f"no {name}-*.parquet in {output}"
    return pq.read_table(files).sort_by("id" if name == "labels" else [("source", "ascending"), ("position", "ascending")])


def _run(argv: list[str], capsys) -> str:
    assert moderate.main(argv) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def in_process(shards, model_dir, compilation_cache, tmp_path_factory):
    output = tmp_path_factory.mktemp("out-in-process")
    assert moderate.main(_argv(shards, output, model_dir, compilation_cache)) == 0
    return output


def test_every_good_record_gets_exactly_one_labeled_row_with_the_documented_schema(in_process, shards):
    table = _read(in_process, "labels")
    assert table.schema == labels_schema(LABELS, keep_text=True, keep_fields=("lang",))
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == sorted(shards.good)
    for row in rows:
        assert row["text"] == shards.good[row["id"]]
        assert row["lang"] == shards.lang[row["id"]]


def test_bad_records_are_dead_lettered_with_their_reason_and_position(in_process, shards):
    table = _read(in_process, "dead_letter")
    assert table.schema == DEAD_LETTER_SCHEMA
    got = [(pathlib.Path(r["source"]).name, r["position"], r["reason"]) for r in table.to_pylist()]
    assert sorted(got) == shards.dead
    payloads = {(pathlib.Path(r["source"]).name, r["position"]): r["payload"] for r in table.to_pylist()}
    assert payloads[("a.txt", 2)] == b"caf\xe9 au lait"
    assert payloads[("c.csv", 4)] == b'c3,"bad"quote,en\r\n'


def test_labels_and_scores_are_the_models_own(in_process, shards, model_dir):
    classifier = load_classifier(model_dir, max_length=MAX_LENGTH)
    rows = _read(in_process, "labels").to_pylist()
    assert {r["model"] for r in rows} == {f"{pathlib.Path(model_dir).name}@{classifier.weights_hash}:float32"}
    texts = [r["text"] for r in rows]
    windows = classifier.tokenizer.encode_windows(texts, STRIDE, MAX_WINDOWS)
    direct = classifier.predict_proba(texts)
    for row, w, proba in zip(rows, windows, direct):
        scores = np.array([row[name] for name in LABELS])
        expected = classifier.predict_ids(w.ids).max(axis=0) if len(w.ids) > 1 else proba
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        assert row["label"] == LABELS[int(expected.argmax())]
        assert row["score"] == pytest.approx(float(expected.max()), abs=1e-5)
        assert row["flagged"] == (row["hate"] >= THRESHOLD)
        assert (row["num_windows"], row["truncated"], row["num_tokens"]) == (len(w.ids), w.truncated, w.num_tokens)
    windowed = {r["id"]: (r["num_windows"], r["truncated"]) for r in rows if r["num_windows"] > 1}
    assert sorted(windowed.values()) == [(2, False), (MAX_WINDOWS, True)]
    assert len({r["label"] for r in rows}) > 1


def test_multi_processing_gives_the_same_rows(in_process, shards, model_dir, compilation_cache, tmp_path, capsys):
    out = _run(_argv(shards, tmp_path, model_dir, compilation_cache) + MULTI_PROCESSING, capsys)
    assert "read = labeled + dead-lettered OK" in out
    single, multi = _read(in_process, "labels"), _read(tmp_path, "labels")
    exact = [c for c in single.column_names if c not in ("score", *LABELS)]
    assert multi.select(exact).to_pylist() == single.select(exact).to_pylist()
    for name in ("score", *LABELS):
        np.testing.assert_allclose(multi[name].to_numpy(), single[name].to_numpy(), atol=1e-5)
    assert _read(tmp_path, "dead_letter").to_pylist() == _read(in_process, "dead_letter").to_pylist()


def test_summary_checks_read_equals_labeled_plus_dead_lettered(shards, model_dir, compilation_cache, tmp_path, capsys):
    out = _run(_argv(shards, tmp_path, model_dir, compilation_cache), capsys)
    read, labeled, dead = len(shards.good) + len(shards.dead), len(shards.good), len(shards.dead)
    assert f"records read {read}, labeled {labeled}, dead-lettered {dead}: read = labeled + dead-lettered OK" in out
    assert "texts/s" in out


def test_a_failing_model_dead_letters_every_record_of_its_batches(shards, model_dir, compilation_cache, tmp_path, capsys, monkeypatch):
    def broken(self, input_ids, attention_mask):
        raise RuntimeError("device lost")

    monkeypatch.setattr(Classifier, "dispatch_padded", broken)
    out = _run(_argv(shards, tmp_path, model_dir, compilation_cache), capsys)
    assert "read = labeled + dead-lettered OK" in out
    assert _read(tmp_path, "labels").num_rows == 0
    failed = [r for r in _read(tmp_path, "dead_letter").to_pylist() if r["reason"] == "inference_error"]
    assert sorted(f"{r['source']}:{r['position']}" for r in failed) == sorted(shards.good)
    assert all("device lost" in r["detail"] for r in failed)


def test_bad_configuration_fails_before_any_data_is_read(shards, model_dir, compilation_cache, tmp_path, capsys):
    argv = _argv(shards, tmp_path, model_dir, compilation_cache)
    assert moderate.main([*argv, "--threshold", "hateful=0.5"]) == 2
    assert "'hateful' is not a label of the model" in capsys.readouterr().err
    assert moderate.main([*argv, "--input", str(tmp_path / "none-*.jsonl")]) == 2
    assert "matches no file" in capsys.readouterr().err
    assert moderate.main([*argv, "--model", str(tmp_path / "no-model")]) == 2
    assert "checkpoint folder does not exist" in capsys.readouterr().err
    (tmp_path / "labels-00000-of-00001.parquet").write_bytes(b"")
    assert moderate.main(argv) == 2
    assert "already holds the outputs of an earlier run" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["--input", "--output"])
def test_missing_input_or_output_fails_before_running(tmp_path, missing, capsys):
    flags = {"--input": str(tmp_path / "*.jsonl"), "--output": str(tmp_path / "out")}
    del flags[missing]
    argv = [part for flag, value in flags.items() for part in (flag, value)]
    assert moderate.main(argv) == 2
    assert f"{missing} is required" in capsys.readouterr().err
