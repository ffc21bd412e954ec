"""Recommended thresholds are chosen for a precision on the rows whose labels decide the question."""

from __future__ import annotations

import numpy as np
import pytest

from flaxmodel.errors import ConfigError
from flaxmodel.training import thresholds
from flaxmodel.training.mixture import DEFAULT_MIXTURE, Mixture, Source
from flaxmodel.training.thresholds import choose_thresholds, threshold_sources
from tests.flaxmodel.training.conftest import assert_one_error_line

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
        Source(name="tweets", reader="table", train="t.csv", licence="MIT", labels={"hate": ("hate",)}),
        Source(name="functional", reader="functional", train="-", licence="project"),
        Source(name="forum", reader="table", train="f.csv", licence="CC-BY-4.0", labels={"hate": ("hate",)}),
    )
    return Mixture(classes=CLASSES, seed=0, sources=sources)


def test_thresholds_are_chosen_on_posts_not_on_the_functional_suite_by_default():
    def names(mixture: Mixture) -> list[str]:
        return [s.name for s in mixture.sources]

    assert names(threshold_sources(_mixture())) == ["tweets", "forum"]
    # Named sources come back in the mixture's order; the suite can be pooled on request.
    chosen = threshold_sources(_mixture(), ["forum", "functional"])
    assert names(chosen) == ["functional", "forum"] and (chosen.classes, chosen.seed) == (CLASSES, 0)


def test_unknown_or_empty_source_choice_fails_naming_the_mixtures_sources():
    with pytest.raises(ConfigError, match=r"\['twitter'\] not in the mixture.*'tweets', 'functional', 'forum'"):
        threshold_sources(_mixture(), ["tweets", "twitter"])
    with pytest.raises(ConfigError, match="no source left"):
        threshold_sources(_mixture(), [])


def test_the_command_fails_on_bad_flags_with_one_error_line_before_reading_data(tiny_checkpoint, tmp_path, capsys):
    model = str(tiny_checkpoint("bert", labels=("friendly", "hostile")))
    capsys.readouterr()
    # No such data root: every case must fail on its own fault, before the validation rows are read.
    args = ["--model", model, "--mixture", DEFAULT_MIXTURE, "--data_root", str(tmp_path / "no_data")]
    bad = {
        "--precision must be in (0, 1], got 1.5": ["--precision", "1.5"],
        "--mixture /no/such.toml: no such file": ["--mixture", "/no/such.toml"],
        "--sources: ['twitter'] not in the mixture": ["--sources", "twitter"],
        f"--classes ['hate']: {model} predicts ['friendly', 'hostile']": [],
    }
    for message, flags in bad.items():
        assert thresholds.main(args + flags) == 2
        assert_one_error_line(capsys.readouterr().err, "flaxmodel.training.thresholds", message)
    assert not (tmp_path / "no_data").exists()
