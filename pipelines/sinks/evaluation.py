"""The evaluation job's report: scores collected over the whole run, metrics, thresholds, a confusion matrix.

:class:`CollectScores` gathers every scored record's true label, probabilities,
``--group_by`` values and model identity; :func:`write_outputs` turns them into
``report.json`` (:func:`build_report`) and ``confusion_matrix.png``.  The report
names the model as the workers ran it: ``model`` is the identity its records
carry, and ``models`` counts the records of every identity (normally one).
"""

from __future__ import annotations

import collections
import io
import json
from typing import Any, Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from flaxmodel import evaluate, multilabel_scores, parse_label_set, set_label_scores, thresholds_for_precision
from pipelines.model import ScoredBlock
from pipelines.names import CONFUSION_PNG, REPORT_FILE


_PARTS = 6


class CollectScores(beam.CombineFn):
    """All (allowed classes, probabilities, group values, model identity, true targets, target scores) of the
    scored records, as arrays: thresholds need every score."""

    def __init__(self, num_labels: int, num_targets: int = 0):
        self._num_labels = num_labels
        self._num_targets = num_targets

    def create_accumulator(self) -> tuple[list, ...]:
        return tuple([] for _ in range(_PARTS))

    def add_input(self, accumulator, element):
        for part, value in zip(accumulator, element):
            part.append(value)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged: tuple[list, ...] = tuple([] for _ in range(_PARTS))
        for accumulator in accumulators:
            for part, values in zip(merged, accumulator):
                part.extend(values)
        return merged

    def extract_output(self, accumulator) -> tuple[np.ndarray, np.ndarray, list, dict[str, int], np.ndarray, np.ndarray]:
        allowed, scores, groups, models, true_targets, target_scores = accumulator
        shape = (len(scores), self._num_labels)
        counts = collections.Counter(models)
        return (
            np.asarray(allowed, bool).reshape(shape),
            np.asarray(scores, np.float32).reshape(shape),
            groups,
            dict(counts.most_common()),
            # -1: the record carries no target annotation.
            np.asarray(true_targets, np.int8).reshape(len(scores), self._num_targets),
            np.asarray(target_scores, np.float32).reshape(len(scores), self._num_targets),
        )


def allowed_classes(value: Any, labels: Sequence[str], label_map: Mapping[str, Sequence[str]] | None = None) -> np.ndarray | None:
    """The classes a record's true label allows (:func:`~flaxmodel.parse_label_set`), read through
    ``--label_map`` when given: a policy's name stands for the classes it maps onto; None if unknown."""
    if label_map:
        if not isinstance(value, str) or value.strip() not in label_map:
            return None
        value = "|".join(label_map[value.strip()])
    return parse_label_set(value, labels)


def true_and_scores(
    scored: ScoredBlock,
    label_field: str,
    labels: tuple[str, ...],
    group_fields: tuple[str, ...],
    target_field: str | None = None,
    targets: tuple[str, ...] = (),
    label_map: Mapping[str, Sequence[str]] | None = None,
):
    """Per record of a scored block: (allowed classes, probabilities, group values, model identity, true
    targets (1 / 0 per category, all -1 without an annotation), target scores)."""
    for i, scores in enumerate(scored.scores):
        fields = {name: values[i] for name, values in scored.records.fields.items()}
        groups = tuple("(none)" if fields.get(f) is None else str(fields.get(f)) for f in group_fields)
        named = parse_target_set(fields.get(target_field), targets) if target_field and targets else None
        truth = np.full(len(targets), -1, np.int8) if named is None else np.array([t in named for t in targets], np.int8)
        allowed = allowed_classes(fields[label_field], labels, label_map)
        yield allowed, scores, groups, scored.model, truth, scored.target_scores[i]


def parse_target_set(value: str | None, targets: Sequence[str]) -> frozenset[str] | None:
    """A record's annotated target groups: a JSON list or names joined by ``|`` ("" for none); None if absent.

    Raises:
      ValueError: for a name that is not one of ``targets``.
    """
    if value is None:
        return None
    value = value.strip()
    names = json.loads(value) if value.startswith("[") else [v for v in value.split("|") if v.strip()]
    named = frozenset(str(n).strip() for n in names)
    unknown = sorted(named - set(targets))
    if unknown:
        raise ValueError(f"target groups {unknown} are not among the model's {list(targets)}")
    return named


def target_report(truth: np.ndarray, target_scores: np.ndarray, targets: Mapping[str, float]) -> dict[str, Any]:
    """Per-category scores of ``targets`` (the model's thresholds) on the records that carry annotations."""
    annotated = (truth >= 0).all(axis=1)
    named = target_scores[annotated] >= np.asarray(list(targets.values()), np.float32)
    return {**multilabel_scores(truth[annotated] == 1, named, list(targets)), "thresholds": dict(targets)}


def _group_scores(
    allowed: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], group_fields: Sequence[str], groups: list
) -> dict[str, dict[str, Any]]:
    """Per ``--group_by`` field, per value: :func:`set_label_scores` of its records."""
    out: dict[str, dict[str, Any]] = {}
    for position, field in enumerate(group_fields):
        values = np.array([g[position] for g in groups], dtype=object)
        out[field] = {
            value: set_label_scores(probabilities[values == value], allowed[values == value], labels)
            for value in sorted(set(values))
        }
    return out


def build_report(
    allowed: np.ndarray,
    probabilities: np.ndarray,
    labels: Sequence[str],
    *,
    target_precision: float,
    dead_letters: Mapping[str, int],
    models: Mapping[str, int],
    inputs: Sequence[str],
    groups: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report's content: metrics of the argmax labels, thresholds and dead-letter counts.

    Args:
      allowed: bool ``[n, num_labels]`` the classes each record's true label allows.
      probabilities: float ``[n, num_labels]`` the model's scores.
      labels: the model's labels.
      target_precision, dead_letters, inputs: reported as given (thresholds aim at the precision).
      models: records scored per model identity (``name@hash:precision``, as the workers ran it).
      groups: per ``--group_by`` field and value, its scores.

    Returns:
      The report (see the module docstring); the full metrics cover the records with one true class.
    """
    exact = allowed.sum(axis=1) == 1
    true_ids = allowed[exact].argmax(axis=1)
    report = {
        # The identity most records carry (normally the only one); "models" lists every one.
        "model": next(iter(sorted(models, key=lambda m: -models[m])), ""),
        "models": dict(models),
        "inputs": list(inputs),
        **evaluate(true_ids, probabilities[exact], labels),
        "confusion_matrix_axes": "rows: true label, columns: predicted label, both in 'labels' order",
        "target_precision": target_precision,
        "thresholds": thresholds_for_precision(true_ids, probabilities[exact], labels, target_precision),
    }
    if not exact.all():
        report["all_rows"] = set_label_scores(probabilities, allowed, labels)
    if groups:
        report["groups"] = {field: dict(values) for field, values in groups.items()}
    report["dead_letters"] = {"total": int(sum(dead_letters.values())), "by_reason": dict(sorted(dead_letters.items()))}
    return report


def confusion_png(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> bytes:
    """A heat map of the confusion matrix, shaded by share of each true label, annotated with counts."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    counts = np.asarray(matrix, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.6 + 1.1 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true label")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for t in range(len(labels)):
        for p in range(len(labels)):
            ax.text(p, t, str(counts[t, p]), ha="center", va="center", color="white" if shares[t, p] > 0.5 else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def _write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path) as f:
        f.write(data)


def write_outputs(
    collected, dead_letters: Mapping[str, int], *, directory: str, labels, target, inputs, group_fields, targets=None
) -> dict:
    """Writes ``report.json`` and ``confusion_matrix.png`` from :class:`CollectScores`' output; returns the report.

    ``targets``: the model's target head ``{category: threshold}``; with it, ``report["targets"]`` scores
    the ``targets`` it names on the records that carry target annotations.
    """
    allowed, probabilities, groups, models, true_targets, target_scores = collected
    report = build_report(
        allowed,
        probabilities,
        labels,
        target_precision=target,
        dead_letters=dead_letters,
        models=models,
        inputs=inputs,
        groups=_group_scores(allowed, probabilities, labels, group_fields, groups),
    )
    if targets:
        report["targets"] = target_report(true_targets, target_scores, targets)
    _write_bytes(FileSystems.join(directory, REPORT_FILE), json.dumps(report, indent=2).encode())
    title = f"{report['model']}: macro F1 {report['macro_f1']:.3f}, n = {report['num_examples']}"
    _write_bytes(FileSystems.join(directory, CONFUSION_PNG), confusion_png(report["confusion_matrix"], labels, title))
    return report


def report_files(_report: dict, directory: str) -> list[str]:
    """The paths :func:`write_outputs` wrote."""
    return [FileSystems.join(directory, REPORT_FILE), FileSystems.join(directory, CONFUSION_PNG)]
