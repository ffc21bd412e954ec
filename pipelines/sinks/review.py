"""The review sample: up to N label rows drawn for human review by a stratified design with known probabilities.

Design (``--review_sample N``, ``--review_seed``, ``--review_band``):

* Strata, from the label row alone, first match wins: ``near_threshold`` (some
  class with a threshold scores within ``--review_band`` of it, on either side),
  ``flagged`` (any other flagged row), else ``label:<top label>``.  Without
  thresholds there are only the label strata.
* Allocation of N (:func:`allocate`): half of N split equally between the
  strata, each capped at its size, then the rest in proportion to what each
  stratum has left unsampled (largest remainders).  So a small stratum such as
  ``flagged`` is not drowned by ``label:neither``, and the whole sample is
  min(N, records).
* Within stratum h of n_h records, the k_h records with the smallest keyed hash
  of (seed, id) are taken.  A keyed hash behaves as independent uniforms, and
  the k smallest of n i.i.d. uniforms are a uniformly random k-subset: the
  draw is simple random sampling without replacement within each stratum,
  with inclusion probability exactly ``pi = k_h / n_h`` (n_h is counted, so
  no bottom-k threshold has to stand in for it).  Horvitz-Thompson weights
  ``1 / pi`` are therefore unbiased, and the stratified variance formula with
  the finite-population correction applies (:mod:`pipelines.sinks.estimates`).
  The draw depends only on the seed, the ids and the strata: the same run
  gives the same sample, on any runner and any bundling.

Scaling: each block keeps, per stratum, only its N smallest hashes (the only
ones that can be among a stratum's N smallest overall), and per stratum a Beam
``Top.SmallestPerKey(N)`` combine, which combines in parallel, keeps at most N
candidates; the strata sizes come from a ``CombinePerKey(sum)`` of per-block
counts.  No step sees more than N rows per stratum.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines.model import ScoredBlock
from pipelines.names import (
    FLAGGED_STRATUM,
    INCLUSION_PROBABILITY,
    LABEL_STRATUM_PREFIX,
    NEAR_THRESHOLD_STRATUM,
    REVIEW_NAME,
    REVIEW_REASON,
)
from pipelines.options import ReviewSettings
from pipelines.sinks.commit import WriteParquet
from pipelines.sinks.outputs import label_table, labels_schema

_COUNTS = "counts"


def review_schema(labels: Sequence[str], keep_fields: Sequence[str], targets: Sequence[str] = ()) -> pa.Schema:
    """The review table: a label row's columns with the text, then ``review_reason`` and ``inclusion_probability``."""
    base = labels_schema(labels, targets=targets, keep_text=True, keep_fields=keep_fields)
    return base.append(pa.field(REVIEW_REASON, pa.string(), nullable=False)).append(
        pa.field(INCLUSION_PROBABILITY, pa.float64(), nullable=False)
    )


def strata(scores: np.ndarray, labels: Sequence[str], thresholds: Mapping[str, float], band: float) -> np.ndarray:
    """Each record's stratum name (object array ``[n]``) from its class scores ``[n, labels]``."""
    top = np.asarray([LABEL_STRATUM_PREFIX + name for name in labels], dtype=object)[scores.argmax(axis=1)]
    near = np.zeros(len(scores), bool)
    flagged = np.zeros(len(scores), bool)
    for name, threshold in thresholds.items():
        column = scores[:, labels.index(name)].astype(np.float64)
        near |= np.abs(column - threshold) <= band
        flagged |= column >= threshold
    return np.where(near, NEAR_THRESHOLD_STRATUM, np.where(flagged, FLAGGED_STRATUM, top))


def unit_hashes(ids: Sequence[str], seed: int) -> np.ndarray:
    """A keyed 64-bit hash of each id (uint64 ``[n]``): the same seed and id give the same value anywhere."""
    key = str(seed).encode()
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8, key=key).digest(), "big") for i in ids),
        dtype=np.uint64,
        count=len(ids),
    )


def allocate(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Records to draw per stratum: half of ``total`` equally (capped at each size), the rest by room left.

    Args:
      sizes: records per stratum.
      total: ``--review_sample``.

    Returns:
      Stratum -> sample size; they sum to ``min(total, sum(sizes))``.
    """
    names = sorted(s for s, n in sizes.items() if n > 0)
    if not names:
        return {}
    take = {s: min(sizes[s], (total // 2) // len(names)) for s in names}
    left = min(total, sum(sizes[s] for s in names)) - sum(take.values())
    room = {s: sizes[s] - take[s] for s in names}
    all_room = sum(room.values())
    if left > 0 and all_room > 0:
        quotas = {s: left * room[s] / all_room for s in names}
        extra = {s: min(room[s], int(quotas[s])) for s in names}
        # Largest remainders get the seats rounding left over; a quota with a fraction is below its room, so the
        # one more seat fits.
        order = sorted((s for s in names if extra[s] < room[s]), key=lambda s: (extra[s] - quotas[s], s))
        for s in order[: left - sum(extra.values())]:
            extra[s] += 1
        take = {s: take[s] + extra[s] for s in names}
    return take


def _rank(candidate: tuple) -> tuple[int, str]:
    """Order of candidates within a stratum: hash, then id (a tie needs equal 64-bit hashes)."""
    return candidate[0], candidate[1]


class ReviewCandidates(beam.DoFn):
    """Per scored block: per stratum its count (tagged ``counts``) and its ``size`` smallest-hash rows.

    Only those rows become dicts (with the text): a row outside a block's
    ``size`` smallest of its stratum cannot be among the stratum's ``size``
    smallest of the whole run.
    """

    def __init__(self, labels, thresholds, targets, keep_fields, settings: ReviewSettings):
        self._labels, self._thresholds, self._targets = tuple(labels), dict(thresholds), dict(targets)
        self._keep_fields, self._settings = tuple(keep_fields), settings
        self._schema = labels_schema(labels, targets=tuple(targets), keep_text=True, keep_fields=keep_fields)

    def process(self, scored: ScoredBlock) -> Iterable[Any]:
        settings = self._settings
        names = strata(scored.scores, self._labels, self._thresholds, settings.review_band)
        hashes = unit_hashes(scored.records.ids, settings.review_seed)
        chosen = []
        for stratum in sorted(set(names.tolist())):
            members = np.flatnonzero(names == stratum)
            yield beam.pvalue.TaggedOutput(_COUNTS, (stratum, len(members)))
            if len(members) > settings.review_sample:
                members = members[np.argsort(hashes[members], kind="stable")[: settings.review_sample]]
            chosen.append(members)
        if not chosen:
            return
        rows = np.concatenate(chosen)
        table = label_table(
            scored.take(rows),
            self._schema,
            self._labels,
            self._thresholds,
            targets=self._targets,
            keep_text=True,
            keep_fields=self._keep_fields,
        )
        for index, row in zip(rows, table.to_pylist()):
            yield str(names[index]), (int(hashes[index]), row["id"], row)


def _draw(kv: tuple[str, list], sizes: Mapping[str, int], total: int) -> Iterable[dict]:
    """The rows drawn from one stratum's candidates, with their stratum and inclusion probability."""
    stratum, candidates = kv
    k = allocate(sizes, total).get(stratum, 0)
    probability = k / sizes[stratum]
    for _, _, row in sorted(candidates, key=_rank)[:k]:
        yield {**row, REVIEW_REASON: stratum, INCLUSION_PROBABILITY: probability}


class WriteReviewSample(beam.PTransform):
    """Scored blocks -> ``DIR/review-*.parquet`` (the drawn rows); returns the paths written.

    Args:
      directory: the run's attempt folder (committed with the run's other outputs).
      labels, thresholds, targets, keep_fields: as for the label rows (``targets``: the target head's
        ``{category: threshold}``, empty without one).
      settings: the review flags (``review_sample`` > 0).
    """

    def __init__(self, directory: str, labels, thresholds, targets, keep_fields, settings: ReviewSettings):
        super().__init__()
        self._directory, self._settings = directory, settings
        self._schema = review_schema(labels, keep_fields, tuple(targets))
        self._candidates = ReviewCandidates(labels, thresholds, targets, keep_fields, settings)

    def expand(self, scored):
        total = self._settings.review_sample
        found = scored | "Candidates" >> beam.ParDo(self._candidates).with_outputs(_COUNTS, main="rows")
        sizes = found[_COUNTS] | "StratumSizes" >> beam.CombinePerKey(sum)
        return (
            found.rows
            | "SmallestHashes" >> beam.combiners.Top.SmallestPerKey(total, key=_rank)
            | "Draw" >> beam.FlatMap(_draw, beam.pvalue.AsDict(sizes), total)
            | "WriteReview" >> WriteParquet(self._directory, REVIEW_NAME, self._schema)
        )
