"""Classification settings refused before reading data, and window aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.classify import ClassifyRecords, ClassifySettings, aggregate_windows
from pipelines.handler import ModelSpec
from pipelines.options import OptionError
from tests.fixtures import minilm_shaped_config

SPEC = ModelSpec(
    name="m",
    labels=("a", "b"),
    max_length=128,
    content_length=126,
    weights_hash="0" * 16,
    config=minilm_shaped_config(("a", "b")),
)


def test_window_scores_aggregate_by_max_or_mean():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    np.testing.assert_allclose(aggregate_windows(probabilities, "max"), [0.9, 0.8])
    np.testing.assert_allclose(aggregate_windows(probabilities, "mean"), [0.55, 0.45])


@pytest.mark.parametrize(
    "settings, message",
    [
        (ClassifySettings(stride=126), "--stride 126"),
        (ClassifySettings(stride=-1), "--stride -1"),
        (ClassifySettings(max_windows=0), "--max_windows"),
        (ClassifySettings(batch_size=8), "--max_windows 16"),
        (ClassifySettings(max_batch_tokens=-1), "--max_batch_tokens"),
        (ClassifySettings(aggregate="median"), "--aggregate median"),
        (ClassifySettings(sort_buffer=0), "--sort_buffer"),
    ],
)
def test_settings_that_cannot_work_fail_at_construction(settings, message):
    with pytest.raises(OptionError, match=message):
        ClassifyRecords(settings, spec=SPEC)


def test_a_bad_model_folder_fails_at_construction(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ClassifyRecords(ClassifySettings(model=str(tmp_path / "missing")))
