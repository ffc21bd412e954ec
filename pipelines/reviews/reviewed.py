"""``moderate-evaluate --reviewed FILE --output DIR``: whole-run estimates from a reviewed review sample.

``FILE`` is a run's ``review-*.parquet`` (or a CSV export of it) with a
``human_label`` column filled in by reviewers (an empty value: not reviewed)
and optionally ``human_targets`` (target groups joined by ``|``); with
``--label_map`` reviewers may write the policy's own label names.  No model and
no input shards are needed: the file carries each record's stratum and
inclusion probability.  Writes ``DIR/review_estimates.json``
(:mod:`pipelines.sinks.estimates`) through the same attempt/commit protocol as
the jobs, and prints the main figures.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from flaxmodel import ConfigError, OptionError, mapped_benign, mapped_predictions, parse_label_map
from pipelines.names import (
    ESTIMATES_FILE,
    HUMAN_LABEL,
    HUMAN_TARGETS,
    INCLUSION_PROBABILITY,
    REVIEW_REASON,
    TARGET_COLUMN_PREFIX,
)
from pipelines.sinks import commit_outputs, start_attempt
from pipelines.sinks.estimates import estimate_quality

_REQUIRED = ("id", "label", "flagged", REVIEW_REASON, INCLUSION_PROBABILITY, HUMAN_LABEL)


def read_reviewed(path: str) -> pa.Table:
    """The reviewed file (Parquet, or CSV by its extension); raises :class:`OptionError` if it cannot be used."""
    matches = FileSystems.match([path])[0].metadata_list
    if not matches:
        raise OptionError(f"--reviewed {path}: no such file")
    with FileSystems.open(matches[0].path) as f:
        if path.endswith(".csv"):
            options = pacsv.ConvertOptions(strings_can_be_null=True, column_types={HUMAN_LABEL: pa.string()})
            table = pacsv.read_csv(f, convert_options=options)
        else:
            table = pq.read_table(f)
    missing = [c for c in _REQUIRED if c not in table.column_names]
    if missing:
        raise OptionError(
            f"--reviewed {path}: lacks column(s) {', '.join(missing)}; give a review-*.parquet of a run with "
            f"--review_sample, with a {HUMAN_LABEL} column filled in by reviewers"
        )
    return table


def labels_of(table: pa.Table) -> list[str]:
    """The model's labels: the float class-score columns of a label row (in file order)."""
    skip = {"score", INCLUSION_PROBABILITY}
    return [
        f.name
        for f in table.schema
        if pa.types.is_floating(f.type) and f.name not in skip and not f.name.startswith(TARGET_COLUMN_PREFIX)
    ]


def _stratum_sizes(reasons: list[str], probabilities: list[float]) -> dict[str, int]:
    """Records in the run per stratum: the sampled rows of each over their (common) inclusion probability."""
    by_stratum: dict[str, list[float]] = collections.defaultdict(list)
    for reason, p in zip(reasons, probabilities):
        by_stratum[reason].append(p)
    sizes = {}
    for reason, values in by_stratum.items():
        if not all(0 < p <= 1 for p in values) or max(values) - min(values) > 1e-9:
            raise OptionError(
                f"--reviewed: stratum {reason!r} has inclusion probabilities {min(values)}..{max(values)}; the "
                "design gives one value in (0, 1] per stratum: was the file edited beyond the human columns?"
            )
        sizes[reason] = max(len(values), round(len(values) / values[0]))
    return sizes


def _targets(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    parts = value if isinstance(value, (list, tuple)) else str(value).split("|")
    return tuple(p.strip() for p in parts if p and p.strip())


def _in_their_names(reviewed: list[dict], classes: list[str], spec: str, benign: str) -> tuple[list[str], list[str], str]:
    """``(their labels, each record's prediction in them, the benign one)`` under ``--label_map``."""
    try:
        label_map = parse_label_map(spec, classes)
    except ConfigError as err:
        raise OptionError(str(err)) from None
    names = list(label_map)
    their_benign = mapped_benign(label_map, benign)
    if their_benign is None:
        raise OptionError(
            f"--label_map: no single label of yours allows --benign_label {benign}; name the one that does"
        )
    probabilities = np.array([[r[c] for c in classes] for r in reviewed], np.float64)
    predicted = [names[i] if i >= 0 else "(none of yours)" for i in mapped_predictions(probabilities, label_map, classes)]
    return names, predicted, their_benign


def estimate_file(path: str, *, benign: str, label_map: str = "") -> dict[str, Any]:
    """The estimates (:func:`estimate_quality`) from a reviewed file, with the design's counts.

    With ``label_map`` (``'theirs=ours|ours,...'``), reviewers wrote the policy's names and the estimates are in
    them: each record's prediction is the name allowing its top class.
    """
    table = read_reviewed(path)
    classes = labels_of(table)
    if benign not in classes:
        raise OptionError(f"--benign_label {benign}: not a label of the run ({', '.join(classes)})")
    rows = table.to_pylist()
    sizes = _stratum_sizes([r[REVIEW_REASON] for r in rows], [r[INCLUSION_PROBABILITY] for r in rows])
    reviewed = [r for r in rows if r[HUMAN_LABEL] not in (None, "")]
    labels, predicted = classes, [r["label"] for r in reviewed]
    if label_map:
        labels, predicted, benign = _in_their_names(reviewed, classes, label_map, benign)
    if not reviewed:
        raise OptionError(f"--reviewed {path}: no row has a {HUMAN_LABEL}; reviewers fill it with one of {labels}")
    for r in reviewed:
        if r[HUMAN_LABEL] not in labels:
            hint = " (or map it with --label_map)" if not label_map else ""
            raise OptionError(
                f"--reviewed {path}: row {r['id']!r} has {HUMAN_LABEL} {r[HUMAN_LABEL]!r}, not one of {labels}{hint}"
            )
    has_targets = HUMAN_TARGETS in table.column_names
    estimates = estimate_quality(
        predicted=predicted,
        flagged=[r["flagged"] for r in reviewed],
        human=[r[HUMAN_LABEL] for r in reviewed],
        strata=[r[REVIEW_REASON] for r in reviewed],
        sizes=sizes,
        labels=labels,
        benign=benign,
        human_targets=[_targets(r[HUMAN_TARGETS]) for r in reviewed] if has_targets else None,
    )
    per_stratum = collections.Counter(r[REVIEW_REASON] for r in reviewed)
    sampled = collections.Counter(r[REVIEW_REASON] for r in rows)
    return {
        "reviewed_file": path,
        "labels": labels,
        "label_map": label_map or None,
        "benign_label": benign,
        "run_records": int(sum(sizes.values())),
        "sampled": len(rows),
        "reviewed": len(reviewed),
        "strata": {
            h: {"records": sizes[h], "sampled": sampled[h], "reviewed": per_stratum[h]} for h in sorted(sizes)
        },
        # A stratum without a review is left out of every estimate, which then covers the others only.
        "unreviewed_strata": sorted(set(sizes) - set(per_stratum)),
        **estimates,
    }


def _line(name: str, figure: Mapping[str, Any]) -> str:
    if figure["estimate"] is None:
        return f"  {name}: no reviewed record counts towards it"
    low, high = figure["ci95"]
    return (
        f"  {name}: {figure['estimate']:.3f} (95% CI {low:.3f}-{high:.3f}, {figure['reviews']} reviews; "
        f"{figure['more_reviews_to_halve_ci']} more would halve the interval)"
    )


def run_estimates(path: str, output: str, *, benign: str, overwrite: bool, label_map: str = "") -> dict[str, Any]:
    """Writes ``output/review_estimates.json`` (committed like a job's outputs), prints the figures, returns them."""
    attempt = start_attempt(output, (ESTIMATES_FILE,), overwrite=overwrite, validate=True)
    report = estimate_file(path, benign=benign, label_map=label_map)
    written = FileSystems.join(attempt.folder, ESTIMATES_FILE)
    with FileSystems.create(written) as f:
        f.write(json.dumps(report, indent=2).encode())
    commit_outputs([written], attempt)
    print(f"{report['reviewed']} of {report['sampled']} sampled records reviewed, standing for {report['run_records']}")
    if "flagged" in report:
        print(_line("flagged precision", report["flagged"]["precision"]))
        print(_line("flagged recall", report["flagged"]["recall"]))
    print(_line("accuracy", report["accuracy"]))
    for label in report["labels"]:
        figures = report["per_label"][label]
        print(_line(f"{label} precision", figures["precision"]))
        print(_line(f"{label} recall", figures["recall"]))
        print(_line(f"{label} share", report["label_distribution"][label]))
    print(f"estimates: {FileSystems.join(output, ESTIMATES_FILE)}")
    return report
