"""The figures of a run report, from a run's Parquet outputs alone: counts, shares, scores, drift.

:func:`read_run` loads what the report needs of ``labels-*.parquet`` (labels,
scores, flags, model identity, ``target_*`` columns when a model with a target
head wrote them), ``dead_letter-*.parquet`` and, when the run drew one,
``review-*.parquet`` (each row's stratum and inclusion probability); a folder
without labels, an empty or unreadable shard, or a run without a single record
is an :class:`~flaxmodel.OptionError` naming the file.  :func:`describe` turns
a run into the report's figures and :func:`drift` compares two runs.

Drift: each label's share (and each target group's share of the flagged
records) is compared with a two-proportion z-test; the score distribution of
each class, and the label distribution itself, by the population stability
index ``PSI = sum_i (p_i - q_i) ln(p_i / q_i)`` over ten bins at the earlier
run's score deciles (bins empty on one side count as 0.0001).  ``--max_drift``
applies to the largest PSI: with millions of records every test is
significant, while a PSI does not grow with the run's size (rules of thumb:
below 0.1 stable, above 0.25 a real shift).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from flaxmodel import OptionError
from pipelines.names import (
    DEAD_LETTER_NAME,
    INCLUSION_PROBABILITY,
    LABELS_NAME,
    REVIEW_NAME,
    REVIEW_REASON,
    TARGET_COLUMN_PREFIX,
    TARGETS,
    shard_pattern,
)
from pipelines.reviews.reviewed import labels_of
from pipelines.sinks import DEAD_LETTER_SCHEMA

EXAMPLES_PER_REASON = 3
DEAD_LETTER_COLUMNS = ("source", "position", "reason", "payload", "detail")
# What the report shows of a review sample: its strata and design, and what the model said of the rows drawn.
REVIEW_COLUMNS = (REVIEW_REASON, INCLUSION_PROBABILITY, "label", "flagged")
_PSI_FLOOR = 1e-4


@dataclasses.dataclass(frozen=True)
class RunData:
    """What the report reads of one run: its label rows' needed columns, its dead letters and review sample."""

    directory: str
    labels: tuple[str, ...]
    rows: pa.Table
    dead_letters: pa.Table
    # The review sample's columns of REVIEW_COLUMNS (None: the run drew none) and its files.
    review: pa.Table | None = None
    review_files: tuple[str, ...] = ()

    @property
    def targets(self) -> tuple[str, ...]:
        """Target groups of the ``target_<group>`` columns (none until a model has a target head)."""
        n = len(TARGET_COLUMN_PREFIX)
        return tuple(c[n:] for c in self.rows.column_names if c.startswith(TARGET_COLUMN_PREFIX))


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _files(directory: str, name: str, flag: str) -> list[str]:
    pattern = FileSystems.join(directory, shard_pattern(name))
    try:
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except (ValueError, OSError) as err:  # an unknown scheme, a filesystem whose extra is not installed
        raise OptionError(f"{flag} {directory}: cannot list the folder ({_first_line(err)})") from None


_REDO = "; re-run the job into that folder with --overwrite, or give another run's folder"


def _parquet(path: str, flag: str) -> pq.ParquetFile:
    """One Parquet shard, opened; raises :class:`OptionError` naming the file if it is empty or not Parquet."""
    try:
        with FileSystems.open(path) as f:
            data = f.read()
        shard = pq.ParquetFile(pa.BufferReader(data)) if data else None
    except (pa.ArrowException, OSError) as err:  # pyarrow's ArrowInvalid for a bad file, OSError for a bad read
        raise OptionError(f"{flag}: {path} is not a readable Parquet file ({_first_line(err)}){_REDO}") from None
    if shard is None:
        raise OptionError(f"{flag}: {path} is empty (0 bytes), not a Parquet file{_REDO}")
    return shard


def _shard(path: str, columns: Sequence[str], flag: str) -> pa.Table:
    """One Parquet shard's ``columns``; raises :class:`OptionError` naming the file if it cannot be used."""
    shard = _parquet(path, flag)
    missing = [c for c in columns if c not in shard.schema_arrow.names]
    if missing:
        raise OptionError(f"{flag}: {path} lacks the column(s) {', '.join(missing)} that the report reads{_REDO}")
    try:
        return shard.read(columns=list(columns))
    except (pa.ArrowException, OSError) as err:  # a damaged page behind an intact footer
        raise OptionError(f"{flag}: {path} is not a readable Parquet file ({_first_line(err)}){_REDO}") from None


def _read(paths: Sequence[str], columns: Sequence[str], flag: str) -> pa.Table | None:
    """The shards' ``columns`` as one table; None when there are no shards."""
    tables = [_shard(path, columns, flag) for path in paths]
    if not tables:
        return None
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid as err:
        raise OptionError(
            f"{flag}: {paths[0]} and the other shards beside it differ in their columns' types ({_first_line(err)}); "
            "they are not one run's outputs"
        ) from None


def read_run(directory: str, flag: str, *, with_review: bool = True) -> RunData:
    """The run in ``directory``, and its review sample if it drew one (``with_review``).

    Raises:
      OptionError: naming ``flag``, when the folder holds no labels, when a shard is empty, not Parquet or
        lacks the columns the report reads, and when the run holds no records at all.
    """
    label_files = _files(directory, LABELS_NAME, flag)
    if not label_files:
        raise OptionError(
            f"{flag} {directory}: no {shard_pattern(LABELS_NAME)} there; give the --output folder of a finished "
            "moderation run"
        )
    schema = _parquet(label_files[0], flag).schema_arrow
    labels = tuple(labels_of(schema.empty_table()))
    wanted = ["label", "score", *labels, "flagged", "model"]
    wanted += [c for c in schema.names if c.startswith(TARGET_COLUMN_PREFIX) or c == TARGETS]
    rows = _read(label_files, wanted, flag)
    dead = _read(_files(directory, DEAD_LETTER_NAME, flag), DEAD_LETTER_COLUMNS, flag)
    if dead is None:
        dead = pa.table({c: pa.array([], DEAD_LETTER_SCHEMA.field(c).type) for c in DEAD_LETTER_COLUMNS})
    if rows.num_rows == 0 and dead.num_rows == 0:
        raise OptionError(
            f"{flag} {directory}: the run holds no records (its labels and dead letters are empty); its input was "
            "empty, so there is nothing to report"
        )
    review_files = tuple(_files(directory, REVIEW_NAME, flag)) if with_review else ()
    review = _read(review_files, REVIEW_COLUMNS, flag)
    return RunData(directory, labels, rows, dead, review, review_files)


def _counts(values: pa.ChunkedArray) -> dict[str, int]:
    counted = values.value_counts().to_pylist() if len(values) else []
    return {str(v["values"]): int(v["counts"]) for v in sorted(counted, key=lambda v: -v["counts"])}


def _target_flags(run: RunData, group: str) -> np.ndarray:
    """Whether each record names the target group: in its ``targets`` list (the model's thresholds), else
    a bool ``target_<group>`` column as is, or a score column at 0.5 or above."""
    if TARGETS in run.rows.column_names:
        named = run.rows.column(TARGETS)
        parents = pc.list_parent_indices(named).to_numpy()
        hits = np.zeros(run.rows.num_rows, bool)
        hits[parents[pc.equal(pc.list_flatten(named), group).to_numpy(zero_copy_only=False)]] = True
        return hits
    column = run.rows.column(TARGET_COLUMN_PREFIX + group)
    if pa.types.is_boolean(column.type):
        return column.fill_null(False).to_numpy(zero_copy_only=False)
    return np.nan_to_num(column.to_numpy(zero_copy_only=False).astype(float)) >= 0.5


def describe(run: RunData) -> dict[str, Any]:
    """The report's figures for one run (JSON-ready)."""
    n = run.rows.num_rows
    flagged_column = run.rows.column("flagged")
    has_flags = n > 0 and flagged_column.null_count < n
    flagged = flagged_column.fill_null(False).to_numpy(zero_copy_only=False) if n else np.zeros(0, bool)
    label_counts = _counts(run.rows.column("label"))
    reasons = _counts(run.dead_letters.column("reason")) if run.dead_letters.num_rows else {}
    examples: dict[str, list[dict[str, Any]]] = {}
    for row in run.dead_letters.to_pylist():
        kept = examples.setdefault(row["reason"], [])
        if len(kept) < EXAMPLES_PER_REASON:
            payload = row["payload"][:200].decode("utf-8", "replace")
            kept.append({**{k: row[k] for k in ("source", "position", "detail")}, "payload": payload})
    out: dict[str, Any] = {
        "input": run.directory,
        "records": n + run.dead_letters.num_rows,
        "labeled": n,
        "labels": list(run.labels),
        "label_counts": {c: label_counts.get(c, 0) for c in run.labels},
        "label_shares": {c: label_counts.get(c, 0) / n if n else 0.0 for c in run.labels},
        "flagged": int(flagged.sum()) if has_flags else None,
        "flagged_share": float(flagged.mean()) if has_flags else None,
        "models": _counts(run.rows.column("model")),
        "dead_letters": {"total": run.dead_letters.num_rows, "by_reason": reasons, "examples": examples},
        "targets": None,
    }
    if run.targets and has_flags:
        out["targets"] = {
            g: {"flagged": int((named & flagged).sum()), "share_of_flagged": _share(named[flagged])}
            for g, named in ((g, _target_flags(run, g)) for g in run.targets)
        }
    return out


def _share(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the z-test that k1/n1 and k2/n2 share one proportion (1.0 when undefined)."""
    if not n1 or not n2:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return 1.0 if se == 0 else math.erfc(abs(k1 / n1 - k2 / n2) / se / math.sqrt(2))


def psi(current: np.ndarray, previous: np.ndarray) -> float:
    """Population stability index of two shares over the same bins (each summing to 1)."""
    p, q = np.maximum(current, _PSI_FLOOR), np.maximum(previous, _PSI_FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


def score_psi(current: np.ndarray, previous: np.ndarray, bins: int = 10) -> float:
    """PSI of a score between two runs, over ``bins`` bins at the earlier run's quantiles."""
    if not len(current) or not len(previous):
        return 0.0
    edges = np.unique(np.quantile(previous, np.linspace(0, 1, bins + 1)[1:-1]))
    shares = [
        np.bincount(np.searchsorted(edges, s, side="right"), minlength=len(edges) + 1) / len(s)
        for s in (current, previous)
    ]
    return psi(*shares)


def _share_row(k1: int, n1: int, k2: int, n2: int) -> dict[str, float]:
    now, then = (k1 / n1 if n1 else 0.0), (k2 / n2 if n2 else 0.0)
    return {"share": now, "previous_share": then, "change": now - then, "p_value": two_proportion_p(k1, n1, k2, n2)}


def drift(current: RunData, previous: RunData) -> dict[str, Any]:
    """Drift of ``current`` against ``previous``: label and target shares with tests, PSIs, the largest PSI."""
    now, then = describe(current), describe(previous)
    n1, n2 = now["labeled"], then["labeled"]
    labels = [c for c in current.labels if c in previous.labels]
    shares = {c: _share_row(now["label_counts"][c], n1, then["label_counts"][c], n2) for c in labels}
    distribution = [np.array([d["label_counts"][c] / max(d["labeled"], 1) for c in labels]) for d in (now, then)]
    psis = {"label distribution": psi(*distribution)}
    for c in labels:
        psis[f"{c} score"] = score_psi(
            current.rows.column(c).to_numpy().astype(float), previous.rows.column(c).to_numpy().astype(float)
        )
    targets = {}
    if now["targets"] and then["targets"]:
        for g in sorted(set(now["targets"]) & set(then["targets"])):
            k1, k2 = now["targets"][g]["flagged"], then["targets"][g]["flagged"]
            targets[g] = _share_row(k1, now["flagged"], k2, then["flagged"])
    if now["flagged"] is not None and then["flagged"] is not None:
        shares["(flagged)"] = _share_row(now["flagged"], n1, then["flagged"], n2)
    worst = max(psis, key=psis.get)
    return {
        "compare_to": previous.directory,
        "shares": shares,
        "targets": targets,
        "psi": psis,
        "max_psi": {"name": worst, "value": psis[worst]},
    }
