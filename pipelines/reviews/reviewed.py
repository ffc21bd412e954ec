"""``moderate-evaluate --reviewed FILE --output DIR``: whole-run estimates from a reviewed review sample.

``FILE`` is a run's ``review-*.parquet`` (or a CSV export of it) with a
``human_label`` column filled in by reviewers (an empty value: not reviewed)
and optionally ``human_targets`` (target groups joined by ``|``).  No model and
no input shards are needed: the file carries each record's stratum and
inclusion probability.  Writes ``DIR/review_estimates.json``
(:mod:`pipelines.sinks.estimates`) through the same attempt/commit protocol as
the jobs, and prints the main figures.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from flaxmodel import OptionError
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


def estimate_file(path: str, *, benign: str) -> dict[str, Any]:
    """The estimates (:func:`estimate_quality`) from a reviewed file, with the design's counts."""
    table = read_reviewed(path)
    labels = labels_of(table)
    if benign not in labels:
        raise OptionError(f"--benign_label {benign}: not a label of the run ({', '.join(labels)})")
    rows = table.to_pylist()
    sizes = _stratum_sizes([r[REVIEW_REASON] for r in rows], [r[INCLUSION_PROBABILITY] for r in rows])
    reviewed = [r for r in rows if r[HUMAN_LABEL] not in (None, "")]
    if not reviewed:
        raise OptionError(f"--reviewed {path}: no row has a {HUMAN_LABEL}; reviewers fill it with one of {labels}")
    for r in reviewed:
        if r[HUMAN_LABEL] not in labels:
            raise OptionError(
                f"--reviewed {path}: row {r['id']!r} has {HUMAN_LABEL} {r[HUMAN_LABEL]!r}, not one of {labels}"
            )
    has_targets = HUMAN_TARGETS in table.column_names
    estimates = estimate_quality(
        predicted=[r["label"] for r in reviewed],
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


def run_estimates(path: str, output: str, *, benign: str, overwrite: bool) -> dict[str, Any]:
    """Writes ``output/review_estimates.json`` (committed like a job's outputs), prints the figures, returns them."""
    attempt = start_attempt(output, (ESTIMATES_FILE,), overwrite=overwrite, validate=True)
    report = estimate_file(path, benign=benign)
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
