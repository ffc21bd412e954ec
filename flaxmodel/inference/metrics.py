"""Classification metrics as plain numpy: labels, confusion matrix, per-class scores, thresholds.

Shared by training (model selection by macro F1) and the evaluation pipeline's
report, so both score a model the same way.  Definitions follow scikit-learn's:
rows of the confusion matrix are true labels, columns predictions; a class with
no predicted (or no true) rows has precision (or recall) 0; macro F1 averages
classes equally, weighted F1 by support.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def confusion_matrix(true_ids: Sequence[int], predicted_ids: Sequence[int], num_labels: int) -> np.ndarray:
    """``[num_labels, num_labels]`` counts, row = true label, column = predicted."""
    true_ids = np.asarray(true_ids, dtype=np.int64)
    predicted_ids = np.asarray(predicted_ids, dtype=np.int64)
    if true_ids.shape != predicted_ids.shape:
        raise ValueError(f"{true_ids.shape[0]} true labels but {predicted_ids.shape[0]} predictions")
    flat = np.bincount(true_ids * num_labels + predicted_ids, minlength=num_labels * num_labels)
    return flat.reshape(num_labels, num_labels)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape, np.float64), where=denominator > 0)


def scores(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro / weighted F1 and per-class precision, recall, F1, support."""
    matrix = np.asarray(matrix, dtype=np.int64)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix shape {matrix.shape} does not fit {len(labels)} labels")
    hits = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _ratio(hits, matrix.sum(axis=0).astype(np.float64))
    recall = _ratio(hits, support.astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = int(support.sum())
    return {
        "accuracy": float(hits.sum() / total) if total else 0.0,
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "num_examples": total,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
    }


def evaluate(true_ids: Sequence[int], probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """:func:`scores` of the arg-max predictions of ``probabilities [n, num_labels]``."""
    predicted = np.asarray(probabilities).argmax(axis=1) if len(true_ids) else np.zeros(0, np.int64)
    return scores(confusion_matrix(true_ids, predicted, len(labels)), labels)


def threshold_for_precision(
    is_positive: np.ndarray, score: np.ndarray, target: float, weights: np.ndarray | None = None
) -> dict[str, Any]:
    """Lowest score threshold whose flagged set reaches ``target`` precision.

    Flagging every row with ``score >= threshold``, the threshold with the most
    recall among those at or above the target precision; ``threshold`` is None
    when no threshold reaches it.

    Args:
      is_positive: bool ``[rows]``.
      score: ``[rows]``.
      target: the precision to reach.
      weights: ``[rows]`` each row's weight (a sampled row's 1 / inclusion probability), so precision
        and recall are those of the population the rows stand for; None: 1 each.

    Returns:
      ``threshold``, the (weighted) ``precision`` and ``recall`` it reaches, and ``flagged`` rows.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    weights = np.ones(len(score)) if weights is None else np.asarray(weights, np.float64)
    positives = float(weights[is_positive].sum())
    order = np.argsort(-score, kind="stable")
    sorted_scores = score[order]
    true_flags = np.cumsum(weights[order] * is_positive[order])
    flagged = np.cumsum(weights[order])
    # Only the last row of a run of tied scores is a real cut: ties are flagged together.
    cuts = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True]) if len(score) else np.zeros(0, int)
    precision = true_flags[cuts] / np.maximum(flagged[cuts], np.finfo(float).tiny)
    reaching = np.flatnonzero(precision >= target)
    if not positives or not len(reaching):
        return {"threshold": None, "precision": None, "recall": None, "flagged": 0}
    best = cuts[reaching[-1]]
    return {
        "threshold": float(sorted_scores[best]),
        "precision": float(true_flags[best] / flagged[best]),
        "recall": float(true_flags[best] / positives),
        "flagged": int(best + 1),
    }


def threshold_for_f1(is_positive: np.ndarray, score: np.ndarray, weights: np.ndarray | None = None) -> dict[str, Any]:
    """The score threshold whose flagged set (``score >= threshold``) has the best F1, and what it reaches.

    Ties in F1 go to the higher threshold; ``threshold`` is None when there is no positive.  ``weights``
    (``[n]``, default 1) counts each row as that many records, as a stratified review sample's rows stand
    for; ``positives`` stays the count of positive rows.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    weights = np.ones(len(score)) if weights is None else np.asarray(weights, dtype=np.float64)
    positives = int(is_positive.sum())
    if not positives:
        return {"threshold": None, "precision": None, "recall": None, "f1": None, "positives": 0}
    order = np.argsort(-score, kind="stable")
    sorted_scores = score[order]
    true_flags = np.cumsum((weights * is_positive)[order])
    flagged = np.cumsum(weights[order])
    total = true_flags[-1]
    cuts = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    f1 = 2 * true_flags[cuts] / (flagged[cuts] + total)
    best = cuts[int(np.argmax(f1))]
    return {
        "threshold": float(sorted_scores[best]),
        "precision": float(true_flags[best] / flagged[best]),
        "recall": float(true_flags[best] / total),
        "f1": float(2 * true_flags[best] / (flagged[best] + total)),
        "positives": positives,
    }


def multilabel_scores(truth: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Per name (one column each of bool ``[n, len(names)]``): precision, recall, F1 and support; and their macro F1."""
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    tp, flagged, support = (truth & predicted).sum(0), predicted.sum(0), truth.sum(0)
    precision, recall = _ratio(tp, flagged), _ratio(tp, support)
    f1 = _ratio(2 * tp, flagged + support)
    per_name = {
        name: {"precision": float(precision[j]), "recall": float(recall[j]), "f1": float(f1[j]), "support": int(support[j])}
        for j, name in enumerate(names)
    }
    present = support > 0
    return {"per_target": per_name, "macro_f1": float(f1[present].mean()) if present.any() else 0.0, "rows": len(truth)}


def thresholds_for_precision(
    true_ids: Sequence[int], probabilities: np.ndarray, labels: Sequence[str], target: float
) -> dict[str, dict[str, Any]]:
    """Per class (one against the rest): the probability threshold for ``target`` precision."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {target}")
    true_ids = np.asarray(true_ids)
    probabilities = np.asarray(probabilities).reshape(len(true_ids), len(labels))
    return {
        name: threshold_for_precision(true_ids == i, probabilities[:, i], target) for i, name in enumerate(labels)
    }


def is_label_id(value: Any) -> bool:
    """Whether a raw label is an integer id (``2``, ``"2"``) rather than a name."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def parse_label(value: Any, labels: Sequence[str]) -> int | None:
    """The id of a label given as an id (``2``, ``"2"``) or a name (``"neither"``); None if neither."""
    if is_label_id(value):
        return int(value) if 0 <= int(value) < len(labels) else None
    if isinstance(value, str) and value.strip() in labels:
        return list(labels).index(value.strip())
    return None


def set_label_scores(
    probabilities: np.ndarray,
    allowed: np.ndarray,
    classes: Sequence[str],
    groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Scores against labels that each allow a set of classes (partial labels), argmax predictions.

    A row is correct when its argmax class is among the classes its label
    allows.  When the distinct label sets do not overlap (Davidson's three
    classes; "hate" against "offensive or neither"), each prediction belongs to
    at most one set, so the usual per-label precision / recall / F1 apply, with
    the sets as labels (named ``a|b``); a prediction outside every set (a
    source that only knows hate and neither, predicted offensive) is wrong for
    all of them.

    Args:
      probabilities: float ``[n, num_classes]``.
      allowed: bool ``[n, num_classes]`` the classes each row's label allows.
      classes: the class names, in column order.
      groups: optional ``[n]`` sub-group names, each scored separately (accuracy only).

    Returns:
      ``num_examples``, ``accuracy``, ``score`` (macro F1 over the sets when they
      do not overlap, else the accuracy) and, for non-overlapping sets,
      ``macro_f1``, ``per_label`` and ``confusion_matrix`` (last column: predicted
      outside every set); ``groups``: ``{name: {accuracy, num_examples}}``.
    """
    allowed = np.asarray(allowed, dtype=bool)
    predicted = np.asarray(probabilities).argmax(axis=1)
    correct = allowed[np.arange(len(predicted)), predicted]
    result: dict[str, Any] = {"num_examples": len(predicted), "accuracy": float(correct.mean()) if len(correct) else 0.0}
    sets, true = np.unique(allowed, axis=0, return_inverse=True)
    # np.unique sorts False first; list sets in class order instead (hate before offensive|neither).
    order = np.lexsort((~sets).T[::-1])
    sets, true = sets[order], np.argsort(order)[true.reshape(-1)]
    names = ["|".join(c for c, a in zip(classes, s) if a) for s in sets]
    if sets.sum(axis=0).max(initial=0) <= 1:
        owner = np.full(len(classes), len(sets))
        for i, members in enumerate(sets):
            owner[members] = i
        matrix = confusion_matrix(true, owner[predicted], len(sets) + 1)
        report = scores(matrix, [*names, "(other)"])
        per_label = {name: report["per_class"][name] for name in names}
        macro = float(np.mean([s["f1"] for s in per_label.values()]))
        result.update(score=macro, macro_f1=macro, per_label=per_label, confusion_matrix=matrix[: len(sets)].tolist())
    else:
        result["score"] = result["accuracy"]
    if groups is not None:
        by_group: dict[str, list[bool]] = {}
        for name, ok in zip(groups, correct):
            by_group.setdefault(name, []).append(bool(ok))
        result["groups"] = {
            name: {"accuracy": float(np.mean(oks)), "num_examples": len(oks)} for name, oks in sorted(by_group.items())
        }
    return result


def parse_label_set(value: Any, labels: Sequence[str]) -> np.ndarray | None:
    """The classes a raw label allows: an id, a name, or names joined by ``|`` (a partial label).

    Args:
      value: e.g. ``2``, ``"neither"`` or ``"offensive|neither"``.
      labels: the class names in id order.

    Returns:
      bool ``[len(labels)]``, or None when any part is not an id or name of ``labels``.
    """
    parts = value.split("|") if isinstance(value, str) and "|" in value else [value]
    allowed = np.zeros(len(labels), dtype=bool)
    for part in parts:
        found = parse_label(part, labels)
        if found is None:
            return None
        allowed[found] = True
    return allowed
