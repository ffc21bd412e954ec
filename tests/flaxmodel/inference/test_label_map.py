"""A platform's label names onto the model's classes: partial labels, their probabilities, bad maps refused."""

from __future__ import annotations

import numpy as np
import pytest

from flaxmodel import ConfigError, mapped_benign, mapped_predictions, mapped_probabilities, parse_label_map

CLASSES = ("hate", "offensive", "neither")


def test_a_label_may_allow_several_classes_listed_in_the_models_order():
    mapping = parse_label_map("offensive=offensive|hate, not=neither", CLASSES)
    assert mapping == {"offensive": ("hate", "offensive"), "not": ("neither",)}
    assert list(mapping) == ["offensive", "not"]


def test_no_map_is_the_models_own_names():
    assert parse_label_map(None, CLASSES) == {"hate": ("hate",), "offensive": ("offensive",), "neither": ("neither",)}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("offensive", "theirs=ours"),
        ("offensive=", "theirs=ours"),
        ("=hate", "theirs=ours"),
        ("a=hate,a=neither", "names 'a' twice"),
        ("a=hateful", "no class 'hateful'"),
    ],
)
def test_a_bad_map_says_what_is_wrong(spec, says):
    with pytest.raises(ConfigError, match=says):
        parse_label_map(spec, CLASSES)


def test_their_probability_is_the_sum_over_the_classes_they_allow():
    mapping = parse_label_map("offensive=hate|offensive,not=neither", CLASSES)
    p = np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
    np.testing.assert_allclose(mapped_probabilities(p, mapping, CLASSES), [[0.5, 0.5], [0.7, 0.3]])


def test_the_benign_stand_in_is_the_one_label_allowing_the_benign_class():
    assert mapped_benign(parse_label_map("offensive=hate|offensive,not=neither", CLASSES), "neither") == "not"
    # Two labels allow it: none stands for it alone.
    assert mapped_benign(parse_label_map("a=hate|neither,b=offensive|neither", CLASSES), "neither") is None


def test_a_prediction_reads_as_the_label_allowing_the_top_class():
    mapping = parse_label_map("offensive=hate|offensive,not=neither", CLASSES)
    # Row 0's top class is neither though hate + offensive outweigh it: the job's label column says neither.
    p = np.array([[0.3, 0.3, 0.4], [0.5, 0.1, 0.4], [0.1, 0.6, 0.3]])
    assert mapped_predictions(p, mapping, CLASSES).tolist() == [1, 0, 0]
    # A top class no label allows reads as none of theirs.
    assert mapped_predictions(p, parse_label_map("h=hate,n=neither", CLASSES), CLASSES).tolist() == [1, 0, -1]
    # Two labels allowing the top class: the one with more probability.
    overlapping = parse_label_map("a=hate|offensive,b=offensive|neither", CLASSES)
    assert mapped_predictions(np.array([[0.1, 0.5, 0.4]]), overlapping, CLASSES).tolist() == [1]
