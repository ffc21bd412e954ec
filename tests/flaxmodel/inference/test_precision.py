"""Precision paths of the Classifier: each within its documented bound of float32, and how ``auto`` chooses.

The timings ``auto`` decides by are injected (``measure``), so these tests say
which path wins for given timings without timing anything.
"""

from __future__ import annotations

import numpy as np
import pytest

from flaxmodel import default_model_path, load_checkpoint, load_classifier
from flaxmodel.errors import ConfigError
from flaxmodel.inference import predictor
from flaxmodel.inference.calibration import (
    MIN_SPEEDUP,
    PROBABILITY_BOUNDS,
    PROBE_TEXTS,
    accelerator_precision,
    calibrate,
    choose,
    cpu_candidates,
    cpu_flags,
    probe_batch,
)
from flaxmodel.inference.predictor import Classifier
from flaxmodel.inference.padding import pad_batch
from flaxmodel.inference.tokenizer import Tokenizer
from tests.fixtures import TEXTS

ALL = ("float32", "bfloat16", "int8")
MAX_LENGTH = 32


@pytest.fixture(scope="module")
def default_paths():
    """The default model's probabilities in each precision, for the probe texts in one batch (one compile each)."""
    checkpoint = load_checkpoint(default_model_path())
    encoder = Tokenizer.from_folder(default_model_path(), MAX_LENGTH)
    probs = {}
    for precision in ALL:
        classifier = Classifier(checkpoint.config, checkpoint.params, encoder, precision=precision, batch_size=16)
        probs[precision] = classifier.predict_padded(*pad_batch(encoder.encode(PROBE_TEXTS), 16, MAX_LENGTH, classifier.pad_id))
    return probs


def test_bfloat16_stays_within_its_bound_of_float32_on_the_default_model(default_paths):
    diff = np.abs(default_paths["bfloat16"] - default_paths["float32"]).max()
    assert 0 < diff <= PROBABILITY_BOUNDS["bfloat16"]


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_auto_runs_a_reduced_path_of_the_default_model_only_within_its_bound(default_paths, precision):
    """However fast a path is, ``auto`` keeps it only if the default model's probe probabilities stay within
    its bound (the current default's int8 path moves its probe scores by 0.03 and is kept; earlier defaults'
    moved by 0.14 and 0.18 and were not)."""
    diff = np.abs(default_paths[precision] - default_paths["float32"]).max()
    runners = {name: (lambda name=name: default_paths[name]) for name in ("float32", precision)}
    chosen = calibrate(runners, measure=lambda name, run: 1.0 if name == "float32" else 0.1)
    assert chosen.precision == (precision if diff <= PROBABILITY_BOUNDS[precision] else "float32")


def _classifier(folder, timings: dict[str, float]) -> Classifier:
    checkpoint = load_checkpoint(folder)
    return Classifier(
        checkpoint.config,
        checkpoint.params,
        Tokenizer.from_folder(folder, 24),
        precision="auto",
        batch_size=16,
        candidates=tuple(timings),
        measure=lambda name, run: timings[name],
    )


def test_auto_keeps_float32_when_nothing_beats_it_by_the_margin(tiny_checkpoint):
    barely = 1 / MIN_SPEEDUP + 0.02
    classifier = _classifier(tiny_checkpoint("bert"), {"float32": 1.0, "bfloat16": barely})
    assert classifier.precision == "float32"
    assert set(classifier.calibration.seconds) == {"float32", "bfloat16"}
    assert "precision float32" in classifier.calibration.describe()
    # The probe shape compiled while calibrating is the chosen path's: not compiled again, and not among the
    # shapes the planner prefers (a load that reuses a stored choice starts from none either).
    assert classifier.num_compiles == 0 and classifier._jitted._cache_size() == 1
    classifier.predict_padded(*probe_batch(classifier.tokenizer.encode, classifier.grid, classifier.pad_id))
    assert classifier.num_compiles == 1 == classifier._jitted._cache_size()


def test_auto_takes_a_clearly_faster_path_and_runs_it(tiny_checkpoint):
    classifier = _classifier(tiny_checkpoint("bert"), {"float32": 1.0, "int8": 0.5})
    assert classifier.precision == "int8"
    assert classifier.params["encoder"]["layer_0"]["ffn"]["intermediate"]["kernel"].dtype == np.int8
    assert classifier.predict_proba(TEXTS[:2]).shape == (2, len(classifier.labels))


def test_a_path_outside_its_bound_is_never_timed_nor_chosen():
    reference = np.array([[0.9, 0.1], [0.2, 0.8]])
    timed = []
    runners = {
        "float32": lambda: reference,
        "bfloat16": lambda: reference + 0.5 * PROBABILITY_BOUNDS["bfloat16"],
        "int8": lambda: reference + 2 * PROBABILITY_BOUNDS["int8"],
    }
    result = calibrate(runners, measure=lambda name, run: timed.append(name) or {"float32": 1.0, "bfloat16": 0.7}[name])
    assert result.precision == "bfloat16"
    assert "int8" not in timed and set(result.seconds) == {"float32", "bfloat16"}
    assert result.max_diff["int8"] == pytest.approx(2 * PROBABILITY_BOUNDS["int8"])
    assert choose({"float32": 1.0, "int8": 1.0}) == "float32"


def test_auto_on_a_cpu_without_bf16_or_vnni_instructions_is_float32_with_nothing_timed(tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(predictor, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    classifier = load_classifier(tiny_checkpoint("bert"))
    assert (classifier.precision, classifier.calibration) == ("float32", None)


def test_cpu_candidates_follow_the_instruction_set(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) >= {"avx2", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert cpu_candidates(cpu_flags(cpuinfo)) == ("float32", "int8")
    assert cpu_candidates({"avx2", "fma"}) == ("float32",)
    assert cpu_candidates({"amx_bf16", "amx_int8"}) == ("float32", "bfloat16", "int8")


class _Device:
    """Stands in for a jax.Device: only its platform and compute capability matter to the choice."""

    def __init__(self, platform: str, compute_capability: str | None = None):
        self.platform = platform
        if compute_capability is not None:
            self.compute_capability = compute_capability


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (_Device("cpu"), None),  # measured at load
        (_Device("tpu"), "bfloat16"),
        (_Device("gpu", "7.5"), "float32"),  # T4: bfloat16 emulated, slower than float32
        (_Device("gpu", "8.0"), "bfloat16"),  # A100
        (_Device("gpu", "8.9"), "bfloat16"),  # L4
        (_Device("gpu"), "float32"),
    ],
)
def test_auto_on_accelerators_is_bfloat16_only_where_the_hardware_has_it(device, expected):
    assert accelerator_precision(device) == expected


def test_an_unknown_precision_is_refused_naming_the_choices(tiny_checkpoint):
    with pytest.raises(ConfigError, match="'auto' or one of \\['float32', 'bfloat16', 'int8'\\]"):
        load_classifier(tiny_checkpoint("bert"), precision="float16")
