"""Recommended thresholds are chosen for a precision on the rows whose labels decide the question."""

from __future__ import annotations

import numpy as np

from flaxmodel.training.thresholds import choose_thresholds

CLASSES = ("hate", "offensive", "neither")


def test_partial_labels_count_only_where_they_decide():
    hate = np.array([0.9, 0.8, 0.7, 0.6, 0.95, 0.5])
    probabilities = np.stack([hate, (1 - hate) / 2, (1 - hate) / 2], axis=1)
    allowed = np.array(
        [
            [1, 0, 0],  # hate
            [1, 0, 0],  # hate
            [0, 1, 1],  # not hate
            [1, 0, 0],  # hate
            [1, 1, 0],  # hate or offensive: says nothing about hate, left out despite its top score
            [0, 0, 1],  # not hate
        ],
        dtype=bool,
    )
    chosen = choose_thresholds(probabilities, allowed, CLASSES, ["hate"], precision=1.0)["hate"]
    # Without the undecided row, flagging >= 0.8 is all hate; >= 0.6 would take in the 0.7 "not hate".
    assert chosen["threshold"] == 0.8 and chosen["precision"] == 1.0
    assert chosen["recall"] == 2 / 3
    assert (chosen["positives"], chosen["negatives"]) == (3, 2)
    lower = choose_thresholds(probabilities, allowed, CLASSES, ["hate"], precision=0.75)["hate"]
    assert lower["threshold"] == 0.6 and lower["recall"] == 1.0
