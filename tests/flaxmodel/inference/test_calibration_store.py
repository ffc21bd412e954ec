"""``auto``'s choice is stored per (machine kind, model, probe shape, candidates) and reused by later loads.

Timings are injected (``measure``) and the CPU's flags patched, so these tests
decide what is measured without depending on this machine's CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from flaxmodel import load_checkpoint
from flaxmodel.inference import predictor
from flaxmodel.inference.calibration import (
    Calibration,
    CalibrationKey,
    CalibrationStore,
    machine_kind,
    stored_or_measured,
)
from flaxmodel.inference.predictor import Classifier
from flaxmodel.inference.tokenizer import Tokenizer
from tests.fixtures import TEXTS

FAST_CPU = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})


def _never(name, run):
    raise AssertionError(f"a load that reuses a stored choice must time nothing (timed {name})")


def _classifier(folder, cache_dir, measure, precision="auto") -> Classifier:
    checkpoint = load_checkpoint(folder)
    return Classifier(
        checkpoint.config,
        checkpoint.params,
        Tokenizer.from_folder(folder, 24),
        name="tiny",
        weights_hash="0123abcd",
        precision=precision,
        batch_size=16,
        candidates=("float32", "int8"),
        measure=measure,
        calibration_cache_dir=str(cache_dir),
    )


@pytest.fixture
def fast_cpu(monkeypatch):
    monkeypatch.setattr(predictor, "cpu_flags", lambda: FAST_CPU)


def test_the_second_load_reuses_the_first_ones_choice_and_labels_the_same(tiny_checkpoint, tmp_path, fast_cpu):
    folder = tiny_checkpoint("bert")
    first = _classifier(folder, tmp_path, lambda name, run: {"float32": 1.0, "int8": 0.5}[name])
    assert (first.precision, first.precision_source) == ("int8", "measured")
    stored = list(tmp_path.glob("calibration-*.json"))
    assert len(stored) == 1
    record = json.loads(stored[0].read_text())
    assert record["key"]["model"] == "tiny@0123abcd"
    assert record["key"]["machine"] == machine_kind(first.devices[0], FAST_CPU)
    assert record["calibration"]["precision"] == "int8"

    second = _classifier(folder, tmp_path, _never)
    assert (second.precision, second.precision_source) == ("int8", "reused")
    assert second.calibration == first.calibration
    # Same compiled probe shape, so the planner cuts the same batches: the outputs are bit-identical.
    assert second.compiled_shapes() == first.compiled_shapes()
    np.testing.assert_array_equal(second.predict_proba(TEXTS), first.predict_proba(TEXTS))


def test_a_precision_given_explicitly_wins_over_a_stored_choice(tiny_checkpoint, tmp_path, fast_cpu):
    folder = tiny_checkpoint("bert")
    _classifier(folder, tmp_path, lambda name, run: {"float32": 1.0, "int8": 0.5}[name])
    given = _classifier(folder, tmp_path, _never, precision="float32")
    assert (given.precision, given.precision_source, given.calibration) == ("float32", "given", None)


def test_another_machine_kind_measures_for_itself(tiny_checkpoint, tmp_path, monkeypatch):
    folder = tiny_checkpoint("bert")
    monkeypatch.setattr(predictor, "cpu_flags", lambda: FAST_CPU)
    _classifier(folder, tmp_path, lambda name, run: {"float32": 1.0, "int8": 0.5}[name])
    monkeypatch.setattr(predictor, "cpu_flags", lambda: FAST_CPU | {"amx_int8"})
    other = _classifier(folder, tmp_path, lambda name, run: {"float32": 1.0, "int8": 0.99}[name])
    assert (other.precision, other.precision_source) == ("float32", "measured")
    assert len(list(tmp_path.glob("calibration-*.json"))) == 2


def test_a_cpu_with_nothing_to_time_is_fixed_by_the_device_and_stores_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(predictor, "cpu_flags", lambda: frozenset({"avx2"}))
    checkpoint = load_checkpoint(tiny_checkpoint("bert"))
    classifier = Classifier(
        checkpoint.config, checkpoint.params, Tokenizer.from_folder(tiny_checkpoint("bert"), 24),
        batch_size=16, measure=_never, calibration_cache_dir=str(tmp_path),
    )
    assert (classifier.precision, classifier.precision_source) == ("float32", "device")
    assert not list(tmp_path.iterdir())


KEY = CalibrationKey("cpu-0000", "m@1234", (16, 24), ("float32", "bfloat16", "int8"))
INT8 = Calibration("int8", {"float32": 1.0, "int8": 0.5}, {"float32": 0.0, "bfloat16": 0.5, "int8": 0.01})
BF16 = Calibration("bfloat16", {"float32": 1.0, "bfloat16": 0.5}, {"float32": 0.0, "bfloat16": 0.01, "int8": 0.5})


def test_the_first_choice_stored_stays_when_workers_measure_at_the_same_time(tmp_path):
    store = CalibrationStore(str(tmp_path / "calibration"))
    assert store.load(KEY) is None
    assert store.save(KEY, INT8) == INT8
    # A worker that measured bfloat16 meanwhile runs the stored int8, as every later load will.
    assert store.save(KEY, BF16) == INT8
    assert stored_or_measured(KEY, store, lambda: BF16) == (INT8, "reused")
    assert stored_or_measured(KEY, None, lambda: BF16) == (BF16, "measured")
    assert not [p for p in (tmp_path / "calibration").iterdir() if p.suffix == ".tmp"]


def test_an_unreadable_or_foreign_file_is_measured_again_and_replaced(tmp_path, caplog):
    store = CalibrationStore(str(tmp_path))
    path = tmp_path / KEY.file_name
    path.write_text("{not json")
    assert store.load(KEY) is None
    assert "ignoring the stored calibration" in caplog.text
    assert stored_or_measured(KEY, store, lambda: BF16) == (BF16, "measured")
    assert store.load(KEY) == BF16
    other = CalibrationKey("cpu-1111", KEY.model, KEY.probe_shape, KEY.candidates)
    path.write_text(json.dumps({"key": other.to_json(), "calibration": INT8.to_json()}))
    assert store.load(KEY) is None
    path.write_text(json.dumps({"key": KEY.to_json(), "calibration": {**INT8.to_json(), "precision": "float16"}}))
    assert store.load(KEY) is None


class _Device:
    def __init__(self, platform: str, device_kind: str = ""):
        self.platform, self.device_kind = platform, device_kind


def test_machine_kind_is_the_cpu_flags_digest_or_the_accelerator_kind():
    assert machine_kind(_Device("cpu"), {"b", "a"}) == machine_kind(_Device("cpu"), ["a", "b"])
    assert machine_kind(_Device("cpu"), {"a"}) != machine_kind(_Device("cpu"), {"a", "amx_int8"})
    assert machine_kind(_Device("gpu", "NVIDIA H100 80GB HBM3")) == "gpu-NVIDIA_H100_80GB_HBM3"
    assert KEY.file_name != CalibrationKey(KEY.machine, "m@5678", KEY.probe_shape, KEY.candidates).file_name
    assert KEY.file_name != CalibrationKey(KEY.machine, KEY.model, (16, 32), KEY.candidates).file_name
