"""``--threshold`` parsing, the model folder's recommended thresholds, and flagging."""

from __future__ import annotations

import numpy as np
import pytest

from flaxmodel import CheckpointError, ModelRef, OptionError, recommended_thresholds, write_thresholds
from pipelines.sinks.flagging import flagged_column, parse_thresholds, resolve_thresholds
from tests.fixtures import minilm_shaped_config

LABELS = ("hate", "offensive", "neither")


def test_thresholds_parse_per_class():
    assert parse_thresholds("hate=0.5, offensive=0.7", LABELS) == {"hate": 0.5, "offensive": 0.7}
    assert parse_thresholds("", LABELS) == {}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("hat=0.5", "'hat' is not a label of the model; labels: hate, offensive, neither"),
        ("hate", "not name=value"),
        ("hate=high", "not a number"),
        ("hate=1.5", "must be a probability"),
        ("hate=nan", "must be a probability"),
        ("hate=0.5,hate=0.6", "given twice"),
    ],
)
def test_bad_thresholds_say_what_is_wrong(spec, message):
    with pytest.raises(OptionError, match=message):
        parse_thresholds(spec, LABELS)


def test_a_row_is_flagged_when_any_class_reaches_its_threshold():
    thresholds = {"hate": 0.5, "offensive": 0.7}
    scores = np.array([[0.5, 0.1, 0.4], [0.2, 0.69, 0.11]], np.float32)
    assert flagged_column(scores, LABELS, thresholds).to_pylist() == [True, False]
    assert flagged_column(scores[:1], LABELS, {}).to_pylist() == [None]


def _model(thresholds: dict[str, float]) -> ModelRef:
    config = minilm_shaped_config(LABELS)
    return ModelRef("m", "m", config, 32, 30, "0" * 16, thresholds=tuple(thresholds.items()))


def test_a_model_folders_recommended_thresholds_apply_unless_overridden(tmp_path):
    write_thresholds(str(tmp_path), {"hate": 0.6}, {"target_precision": 0.8})
    assert recommended_thresholds(str(tmp_path)) == {"hate": 0.6}
    model = _model({"hate": 0.6})
    assert resolve_thresholds("", model) == {"hate": 0.6}
    assert resolve_thresholds("offensive=0.9", model) == {"offensive": 0.9}
    assert resolve_thresholds("none", model) == {}
    # A folder without thresholds.json recommends none: flagged stays null.
    assert recommended_thresholds(str(tmp_path / "missing")) == {}
    assert resolve_thresholds("", _model({})) == {}


def test_recommended_thresholds_must_fit_the_model(tmp_path):
    with pytest.raises(OptionError, match="names \\['toxic'\\], not labels of the model"):
        resolve_thresholds("", _model({"toxic": 0.6}))
    (tmp_path / "thresholds.json").write_text('{"thresholds": {"hate": 2}}')
    with pytest.raises(CheckpointError, match="not probabilities"):
        recommended_thresholds(str(tmp_path))
