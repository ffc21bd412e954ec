"""The rules that choose the shipped target head's thresholds and the cards' target figures.

:func:`best_f1_thresholds` must pick each category's threshold on the rows that annotate that category
only (a row a source does not annotate is not a negative), and :func:`review_figures` must count a
hateful entry as a hit only when a group it attacks is named, over entries annotated in every group.
Both are checked against brute force and against small cases worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from flaxmodel import ConfigError
from flaxmodel.training.target_data import CATEGORIES, TargetSet
from flaxmodel.training.targets import best_f1_thresholds, review_figures

K = len(CATEGORIES)


def brute_force_f1(positive: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Every distinct score as a threshold (flag ``score >= t``); the best F1, ties to the higher threshold."""
    best = None
    for t in sorted(set(score.tolist()), reverse=True):
        flagged = score >= t
        tp = int((flagged & positive).sum())
        f1 = 2 * tp / (flagged.sum() + positive.sum())
        if best is None or f1 > best["f1"]:
            best = {"threshold": t, "precision": tp / flagged.sum(), "recall": tp / positive.sum(), "f1": f1}
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thresholds_are_the_best_f1_on_each_categorys_annotated_rows_only(seed):
    rng = np.random.default_rng(seed)
    n = 400
    known = rng.random((n, K)) < 0.6
    # Cells a source does not annotate hold 0, as the readers leave them: counted as negatives they would
    # drag each category's precision (and threshold) down.
    labels = ((rng.random((n, K)) < 0.25) & known).astype(np.float32)
    scores = np.clip(0.35 * labels + rng.random((n, K)) * 0.7, 0, 1).astype(np.float32)
    scores[~known] += 0.3  # unannotated rows score high: they matter if they are let in
    chosen = best_f1_thresholds(scores, labels, known)
    assert list(chosen) == list(CATEGORIES)
    for j, category in enumerate(CATEGORIES):
        rows = known[:, j]
        expected = brute_force_f1(labels[rows, j] > 0.5, scores[rows, j].astype(np.float64))
        got = chosen[category]
        assert got["rows"] == int(rows.sum()) and got["positives"] == int(labels[rows, j].sum()), category
        for key in ("threshold", "precision", "recall", "f1"):
            assert got[key] == pytest.approx(expected[key], rel=1e-12), (category, key)


def test_a_worked_threshold_leaves_unannotated_rows_out():
    # race: annotated rows score 0.9 (attack), 0.7, 0.6 (attack), 0.2; three unannotated rows score higher.
    race = np.array([0.9, 0.7, 0.6, 0.2, 0.95, 0.85, 0.8])
    scores = np.tile(race[:, None], (1, K)).astype(np.float64)
    labels = np.zeros((7, K), np.float32)
    labels[[0, 2], :] = 1
    known = np.ones((7, K), bool)
    known[4:, 0] = False
    chosen = best_f1_thresholds(scores, labels, known)
    # At 0.6: two of three flagged are attacks, both attacks flagged: F1 0.8, the best of the four cuts.
    assert chosen["race"] == {
        "threshold": 0.6, "precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8),
        "positives": 2, "rows": 4,
    }  # fmt: skip
    # In the other categories the three higher rows are annotated negatives: 0.6 flags six rows (F1 0.5), as
    # does 0.9 (one attack among two flagged), and a tie goes to the higher threshold.
    assert chosen["religion"] == {
        "threshold": 0.9, "precision": 0.5, "recall": 0.5, "f1": 0.5, "positives": 2, "rows": 7,
    }  # fmt: skip


def test_a_category_attacked_only_in_unannotated_rows_has_no_threshold():
    scores = np.full((4, K), 0.5)
    labels = np.zeros((4, K), np.float32)
    labels[0, :] = 1
    known = np.ones((4, K), bool)
    known[0, CATEGORIES.index("disability")] = False
    labels[0, CATEGORIES.index("disability")] = 1  # even a stray 1 in a masked cell does not count
    with pytest.raises(ConfigError, match="'disability'"):
        best_f1_thresholds(scores, labels, known)


def _set(rows: list[tuple[bool, dict[str, bool] | None, tuple[str, ...], dict[str, float]]]) -> TargetSet:
    """Rows of (hateful, known categories (None: all), attacked categories, scores above 0)."""
    n = len(rows)
    labels, known, scores = np.zeros((n, K), np.float32), np.zeros((n, K), bool), np.zeros((n, K), np.float32)
    for i, (_, said, attacked, scored) in enumerate(rows):
        known[i] = [True] * K if said is None else [said.get(c, False) for c in CATEGORIES]
        labels[i] = [c in attacked for c in CATEGORIES]
        scores[i] = [scored.get(c, 0.0) for c in CATEGORIES]
    hateful = np.array([r[0] for r in rows])
    return TargetSet("worked", [f"t{i}" for i in range(n)], labels, known, hateful), scores


THRESHOLDS = {c: 0.5 for c in CATEGORIES} | {"religion": 0.3125}
WORKED = [
    (True, None, ("race",), {"race": 0.9}),  # hit
    (True, None, ("religion",), {"gender": 0.8}),  # a group named, but not the one attacked: no hit
    (True, None, ("origin",), {"origin": 0.49}),  # nothing named: no hit
    (True, {"gender": True}, ("gender",), {"gender": 0.9}),  # annotated in one group only: not judged
    (True, None, (), {"race": 0.9}),  # hateful with no group among the seven: not judged
    (True, None, ("race", "religion"), {"religion": 0.3125}),  # a score at its threshold names it: hit
    (False, None, (), {"religion": 0.7}),  # not hateful, a group named
    (False, None, (), {"race": 0.1}),  # not hateful, none named
    (False, {}, (), {"race": 0.6}),  # not hateful and unannotated: still a non-hateful entry, a group named
]


def test_review_figures_count_hits_on_the_attacked_group_over_fully_annotated_entries():
    data, scores = _set(WORKED)
    figures = review_figures(scores, data, THRESHOLDS)
    assert figures == {
        "hateful_targeted": 4,
        "true_category_named": 0.5,
        "not_hateful": 3,
        "any_target_named": pytest.approx(2 / 3),
    }


def test_review_figures_of_a_set_without_hateful_or_clean_entries_are_nan():
    data, scores = _set([WORKED[0]])
    figures = review_figures(scores, data, THRESHOLDS)
    assert figures["hateful_targeted"] == 1 and figures["true_category_named"] == 1.0
    assert figures["not_hateful"] == 0 and np.isnan(figures["any_target_named"])
    data, scores = _set([WORKED[6]])
    assert np.isnan(review_figures(scores, data, THRESHOLDS)["true_category_named"])
