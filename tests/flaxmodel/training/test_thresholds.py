"""Recommended thresholds are chosen for a precision on the rows whose labels decide the question."""

from __future__ import annotations

import numpy as np
import pytest

from flaxmodel.errors import ConfigError
from flaxmodel.training.mixture import Mixture, Source
from flaxmodel.training.thresholds import choose_thresholds, threshold_sources

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


def _mixture() -> Mixture:
    sources = (
        Source(name="tweets", reader="table", train="t.csv", labels={"hate": ("hate",)}),
        Source(name="functional", reader="functional", train="-"),
        Source(name="forum", reader="table", train="f.csv", labels={"hate": ("hate",)}),
    )
    return Mixture(classes=CLASSES, seed=0, sources=sources)


def test_thresholds_are_chosen_on_posts_not_on_the_functional_suite_by_default():
    def names(mixture: Mixture) -> list[str]:
        return [s.name for s in mixture.sources]

    assert names(threshold_sources(_mixture())) == ["tweets", "forum"]
    # Named sources come back in the mixture's order; the suite can be pooled on request.
    chosen = threshold_sources(_mixture(), "forum, functional")
    assert names(chosen) == ["functional", "forum"] and (chosen.classes, chosen.seed) == (CLASSES, 0)


def test_unknown_or_empty_source_choice_fails_naming_the_mixtures_sources():
    with pytest.raises(ConfigError, match=r"\['twitter'\] not in the mixture.*'tweets', 'functional', 'forum'"):
        threshold_sources(_mixture(), "tweets,twitter")
    with pytest.raises(ConfigError, match="no source left"):
        threshold_sources(_mixture(), " , ")
