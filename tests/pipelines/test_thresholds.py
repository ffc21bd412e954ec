"""``--threshold`` parsing and flagging."""

from __future__ import annotations

import pytest

from pipelines.options import OptionError
from pipelines.thresholds import is_flagged, parse_thresholds

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
    assert is_flagged({"hate": 0.5, "offensive": 0.1, "neither": 0.4}, thresholds) is True
    assert is_flagged({"hate": 0.2, "offensive": 0.69, "neither": 0.11}, thresholds) is False
    assert is_flagged({"hate": 0.9, "offensive": 0.0, "neither": 0.1}, {}) is None
