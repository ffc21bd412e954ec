"""The figures adapting selects and sets thresholds by: weighted, in the user's labels.

Every row weighs the records it stands for (1 for ``--train`` rows, N_h / r_h
for reviewed ones), so a figure is the population's and not the sample's.  The
macro F1 averages the user's labels that the rows contain only: a label no row
has cannot be scored, and averaging in its zero would understate the model.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from flaxmodel.inference.metrics import threshold_for_precision


def macro_f1(true: np.ndarray, predicted: np.ndarray, weights: np.ndarray, num_labels: int) -> float:
    """Weighted macro F1 over the labels ``true`` contains.

    Args:
      true, predicted: int ``[rows]`` label indices.
      weights: ``[rows]`` records each row stands for.
      num_labels: how many labels there are.

    Returns:
      The mean over labels with weighted support of ``2 TP / (2 TP + FP + FN)``.
    """
    true, predicted, weights = np.asarray(true), np.asarray(predicted), np.asarray(weights, np.float64)
    scores = []
    for label in range(num_labels):
        support = weights[true == label].sum()
        if support <= 0:
            continue
        tp = weights[(true == label) & (predicted == label)].sum()
        fp = weights[(true != label) & (predicted == label)].sum()
        scores.append(2 * tp / (2 * tp + fp + (support - tp)))
    return float(np.mean(scores)) if scores else 0.0


def thresholded_classes(label_map: Mapping[str, Sequence[str]], classes: Sequence[str], benign: str) -> list[str]:
    """Classes that get a flag threshold: not ``benign``, and allowed by a label of theirs that excludes it."""
    return [
        c for c in classes if c != benign and any(c in allowed and benign not in allowed for allowed in label_map.values())
    ]


def choose_thresholds(
    probabilities: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    label_map: Mapping[str, Sequence[str]],
    classes: Sequence[str],
    benign: str,
    target: float,
) -> dict[str, dict[str, Any]]:
    """Per thresholded class, the lowest probability threshold reaching ``target`` weighted precision.

    A flag of class c on a row is right when the row's label allows c.

    Args:
      probabilities: float ``[rows, len(classes)]`` the adapted model's class probabilities on held-out rows.
      labels: int ``[rows]`` their labels (indices into ``label_map``'s keys).
      weights: ``[rows]`` records each row stands for.
      label_map: their label -> the classes it allows.
      classes: the model's classes.
      benign: the class that is never flagged.
      target: the precision to reach.

    Returns:
      Class -> :func:`~flaxmodel.inference.metrics.threshold_for_precision`'s result (``threshold`` None where
      no threshold reaches the target) plus ``positives``, the weighted rows whose label allows the class.
    """
    allows = np.array([[c in allowed for c in classes] for allowed in label_map.values()])
    out = {}
    for c in thresholded_classes(label_map, classes, benign):
        column = list(classes).index(c)
        positive = allows[np.asarray(labels), column]
        found = threshold_for_precision(positive, probabilities[:, column], target, weights=weights)
        out[c] = {**found, "positives": float(np.asarray(weights)[positive].sum())}
    return out
