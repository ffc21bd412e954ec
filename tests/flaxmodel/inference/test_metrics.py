"""Metric math checked against numbers worked out by hand on a known confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest

from flaxmodel.inference.metrics import confusion_matrix, evaluate, scores, threshold_for_precision, thresholds_for_precision

LABELS = ("hate", "offensive", "neither")
# Rows: true hate, offensive, neither; columns: predicted.
MATRIX = np.array([[2, 1, 1], [1, 6, 1], [0, 2, 6]])


def _rows(matrix: np.ndarray) -> tuple[list[int], list[int]]:
    true, predicted = [], []
    for t in range(len(matrix)):
        for p in range(len(matrix)):
            true += [t] * int(matrix[t, p])
            predicted += [p] * int(matrix[t, p])
    return true, predicted


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    true, predicted = _rows(MATRIX)
    np.testing.assert_array_equal(confusion_matrix(true, predicted, 3), MATRIX)


def test_scores_equal_hand_computed_values():
    report = scores(MATRIX, LABELS)
    # hate: P 2/3, R 2/4; offensive: P 6/9, R 6/8; neither: P 6/8, R 6/8.
    precision = [2 / 3, 6 / 9, 6 / 8]
    recall = [2 / 4, 6 / 8, 6 / 8]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    support = [4, 8, 8]
    for i, name in enumerate(LABELS):
        got = report["per_class"][name]
        assert got["precision"] == pytest.approx(precision[i])
        assert got["recall"] == pytest.approx(recall[i])
        assert got["f1"] == pytest.approx(f1[i])
        assert got["support"] == support[i]
    assert report["accuracy"] == pytest.approx(14 / 20)
    assert report["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert report["weighted_f1"] == pytest.approx(sum(f * s for f, s in zip(f1, support)) / 20)
    assert report["confusion_matrix"] == MATRIX.tolist()
    assert report["labels"] == list(LABELS)


def test_never_predicted_class_scores_zero_not_nan():
    report = scores(np.array([[0, 2], [0, 3]]), ("a", "b"))
    assert report["per_class"]["a"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["macro_f1"] == pytest.approx((0 + 2 * 0.6 * 1 / 1.6) / 2)


def test_evaluate_uses_the_most_probable_class():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    report = evaluate([0, 1, 1], probabilities, LABELS)
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]


def test_threshold_is_the_lowest_reaching_the_target_precision():
    # Scores descending: 0.9 pos, 0.8 pos, 0.7 neg, 0.6 pos, 0.5 neg, 0.4 pos.
    positive = np.array([1, 1, 0, 1, 0, 1], bool)
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    # Cumulative precision: 1, 1, 2/3, 3/4, 3/5, 4/6.
    assert threshold_for_precision(positive, score, 0.75) == {
        "threshold": 0.6,
        "precision": 0.75,
        "recall": 0.75,
        "flagged": 4,
    }
    assert threshold_for_precision(positive, score, 0.9)["threshold"] == 0.8


def test_tied_scores_are_flagged_together():
    positive = np.array([1, 0, 1], bool)
    score = np.array([0.9, 0.5, 0.5])
    # Cutting between the two 0.5 rows is impossible: at 0.5 precision is 2/3.
    assert threshold_for_precision(positive, score, 0.8)["threshold"] == 0.9
    assert threshold_for_precision(positive, score, 0.6)["threshold"] == 0.5


def test_unreachable_precision_gives_no_threshold():
    result = threshold_for_precision(np.array([0, 0, 1], bool), np.array([0.9, 0.8, 0.1]), 0.9)
    assert result["threshold"] is None and result["flagged"] == 0


def test_thresholds_per_class_one_against_the_rest():
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    result = thresholds_for_precision([0, 1, 1, 1], probabilities, ("a", "b"), 1.0)
    assert result["a"]["threshold"] == 0.9 and result["a"]["recall"] == 1.0
    assert result["b"]["threshold"] == 0.4 and result["b"]["recall"] == 1.0
    with pytest.raises(ValueError, match="target precision"):
        thresholds_for_precision([0], probabilities[:1], ("a", "b"), 0.0)


def test_weights_move_the_threshold_the_way_the_population_does():
    # Four sampled rows by score: a true flag at 0.9, false ones at 0.8 and 0.7, a true one at 0.6.
    is_positive = np.array([True, False, False, True])
    score = np.array([0.9, 0.8, 0.7, 0.6])
    unweighted = threshold_for_precision(is_positive, score, 0.5)
    assert unweighted["threshold"] == 0.6 and unweighted["precision"] == 0.5
    # The false flags stand for 3 records each (inclusion probability 1/3): cutting at 0.6 is then 2/8 precise,
    # so the threshold must rise to 0.9, where precision is 1.
    weighted = threshold_for_precision(is_positive, score, 0.5, weights=np.array([1.0, 3.0, 3.0, 1.0]))
    assert weighted["threshold"] == 0.9 and weighted["precision"] == 1.0 and weighted["recall"] == 0.5
    # The true ones standing for more records instead lowers nothing below 0.6 but keeps it there.
    heavy_true = threshold_for_precision(is_positive, score, 0.5, weights=np.array([3.0, 1.0, 1.0, 3.0]))
    assert heavy_true["threshold"] == 0.6 and heavy_true["precision"] == pytest.approx(6 / 8)
