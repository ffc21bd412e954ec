"""Near-duplicates between validation and training texts (DynaHate's perturbation pairs)."""

from __future__ import annotations

import numpy as np
import pytest

from flaxmodel.training.near_duplicates import JACCARD, seen_in_training

TRAIN = [
    "Not all jews are bad but most of them are not kind",
    "bllllack people need to geeeet out",
    "I had pasta for lunch today",
]


def test_a_perturbation_of_a_training_entry_is_seen_and_a_new_text_is_not():
    queries = [
        "not all Jews are bad, and most of them are kind",  # a label-flipping perturbation of TRAIN[0]
        "these people should get out of here now",  # shares two words of eleven with TRAIN[1]
        "The council meets on Tuesdays about the new bridge",
        "",
        "!!!",
    ]
    np.testing.assert_array_equal(seen_in_training(queries, TRAIN), [True, False, False, False, False])


def test_the_threshold_decides_how_close_counts():
    query, entry = ["a b c d"], ["a b x y"]  # 2 shared of 6 distinct words: Jaccard 1/3
    assert not seen_in_training(query, entry, threshold=JACCARD)[0]
    assert seen_in_training(query, entry, threshold=0.3)[0]
    assert seen_in_training(["A b, C d"], ["d c b a"], threshold=1.0)[0]  # case, order, punctuation ignored
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        seen_in_training(query, entry, threshold=0)


def test_many_queries_are_matched_across_slices():
    # More queries than one slice of the product, each a near-copy of a different training text.
    corpus = [f"entry number {i} about topic w{i} and w{i + 1}" for i in range(1500)]
    queries = [f"entry number {i} about topic w{i} and w{i + 1} again" for i in range(0, 1500, 2)]
    queries += [f"unrelated z{i} q{i}" for i in range(300)]
    seen = seen_in_training(queries, corpus)
    assert seen[:750].all() and not seen[750:].any()
    assert not seen_in_training([], corpus).size and not seen_in_training(queries, []).any()
