"""The run's review sample as the report shows it: its strata, their sizes, inclusion probabilities and files.

``moderate --review_sample N`` writes ``review-*.parquet``
(:mod:`pipelines.sinks.review`): the records drawn, each with its stratum
(``review_reason``) and its inclusion probability ``pi = k / n``, the k drawn
of the n records of its stratum.  So each stratum's size in the run is
``k / pi`` (as :mod:`pipelines.reviews.reviewed` counts it), and each reviewed
record stands for ``1 / pi`` records of the run in the estimates that
``moderate-evaluate --reviewed`` makes from the file once reviewers have
filled in its ``human_label`` column.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.names import (
    FLAGGED_STRATUM,
    INCLUSION_PROBABILITY,
    LABEL_STRATUM_PREFIX,
    NEAR_THRESHOLD_STRATUM,
    REVIEW_REASON,
)
from pipelines.reporting.data import RunData

# Inclusion probabilities of one stratum are one value k / n; a wider spread means the file was edited.
_SAME_PROBABILITY = 1e-9


def _order(strata: set[str], labels: tuple[str, ...]) -> list[str]:
    """Near a threshold, flagged, then the label strata in the model's label order (others last, sorted)."""
    known = [NEAR_THRESHOLD_STRATUM, FLAGGED_STRATUM, *(LABEL_STRATUM_PREFIX + c for c in labels)]
    return [s for s in known if s in strata] + sorted(strata - set(known))


def describe_review(run: RunData) -> dict[str, Any] | None:
    """The review sample's figures (JSON-ready), or None when the run drew none.

    Returns:
      ``files`` (the review-*.parquet paths), ``drawn`` (rows in them), ``records`` (the strata's sizes
      summed: the run's labeled records, if the sample is this run's), ``labeled`` (the run's), and per stratum
      ``drawn``, ``records``, ``inclusion_probability`` (its smallest and largest value: one, unless the file
      was edited), ``weight`` (1 / probability) and ``labels`` (the model's labels of the rows drawn).
    """
    if run.review is None:
        return None
    reasons = np.asarray(run.review.column(REVIEW_REASON).to_pylist(), dtype=object)
    probabilities = run.review.column(INCLUSION_PROBABILITY).to_numpy().astype(float)
    labels = np.asarray(run.review.column("label").to_pylist(), dtype=object)
    strata: dict[str, dict[str, Any]] = {}
    for stratum in _order(set(reasons.tolist()), run.labels):
        chosen = reasons == stratum
        drawn, low, high = int(chosen.sum()), float(probabilities[chosen].min()), float(probabilities[chosen].max())
        drawn_labels = labels[chosen].tolist()
        strata[stratum] = {
            "drawn": drawn,
            "records": max(drawn, round(drawn / high)) if high > 0 else None,
            "inclusion_probability": [low, high],
            "weight": 1 / high if high > 0 else None,
            "consistent": 0 < low and high - low <= _SAME_PROBABILITY and high <= 1,
            "labels": {c: drawn_labels.count(c) for c in run.labels if c in drawn_labels},
        }
    return {
        "files": list(run.review_files),
        "drawn": len(reasons),
        "records": sum(s["records"] or 0 for s in strata.values()),
        "labeled": run.rows.num_rows,
        "strata": strata,
    }
