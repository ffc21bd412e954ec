"""Whole-run quality estimated from a reviewed review sample: weighted ratios with 95% intervals.

The sample (:mod:`pipelines.sinks.review`) is simple random sampling without
replacement within strata.  From a reviewed copy, stratum h has N_h records in
the run (``round(sampled_h / inclusion_probability_h)``) of which r_h were
reviewed (a ``human_label`` given).  Rows left unreviewed are taken as missing
at random within their stratum, so the reviewed rows are themselves a simple
random sample of it and each weighs ``N_h / r_h``.

Every figure is a ratio R = Y / X of two weighted totals (Hajek estimator), for
example precision of flagged = (flagged and harmful) / flagged, a class's recall
= (predicted c and human c) / human c, a class's share = human c / all.  With
y and x the 0/1 indicators of a reviewed record::

    Y = sum_h N_h mean_h(y),   X = sum_h N_h mean_h(x),   R = Y / X
    Var(R) ~= sum_h N_h^2 (1 - r_h / N_h) s_h^2(d) / r_h / X^2,   d = y - R x

the stratified variance with the finite-population correction, applied to the
linearized ratio (Taylor), which is nearly unbiased once each stratum holds a
few dozen reviews.  When x = 1 for every record (a share), X = N is known and R
is the Horvitz-Thompson estimate itself.  The 95% interval is Wilson's score
interval for R on the design's effective sample size, n* = R (1 - R) / Var
(Korn and Graubard's approach): it matches R +- 1.96 sqrt(Var) where that is
sound and stays honest near 0 and 1, where Var collapses.  At R = 0 or 1 the
variance says nothing, so n* is Kish's effective size of the reviewed records
in the denominator, (sum w)^2 / sum w^2; 23 reviews all agreeing then give
[0.857, 1], not [1, 1].  Only a census of those strata has no interval.

Reviews to halve the interval: with a_h = N_h^2 s_h^2(d) / X^2 the variance is
A - B for A = sum a_h / r_h and B = sum a_h / N_h.  Multiplying every r_h by m
gives A / m - B, a quarter of A - B at m = 4A / (A + 3B) (4 without the
correction); the figure reported is sum_h min(N_h, ceil(m r_h)) - r_h more
reviews over the strata that carry the estimate's variance (a_h > 0: for the
precision of flagged, the strata holding flagged records), drawn by the same
design (the next-smallest hashes of each stratum).  A stratum that runs out
(N_h reached) makes the figure an underestimate.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

Z_95 = 1.959963984540054


def stratified_ratio(y: np.ndarray, x: np.ndarray, strata: np.ndarray, sizes: Mapping[str, int]) -> dict[str, Any]:
    """The Hajek ratio ``sum w y / sum w x`` over the reviewed records, with its stratified 95% interval.

    Args:
      y, x: 0/1 (or real) values of each reviewed record, ``[r]``.
      strata: each reviewed record's stratum, ``[r]``.
      sizes: records in the run per stratum (N_h); every stratum of ``strata`` must be in it.

    Returns:
      ``estimate`` (None when no reviewed record has x), ``ci95`` [low, high], ``standard_error``,
      ``reviews`` (records with x among the reviewed), ``more_reviews_to_halve_ci``.
    """
    y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
    names = sorted(set(strata.tolist()))
    groups = [(sizes[h], strata == h) for h in names]
    total_x = sum(n * x[m].mean() for n, m in groups)
    if total_x <= 0:
        return {"estimate": None, "ci95": None, "standard_error": None, "reviews": 0, "more_reviews_to_halve_ci": None}
    ratio = sum(n * y[m].mean() for n, m in groups) / total_x
    d = y - ratio * x
    a_terms, b_terms, counts = [], [], []
    for n, m in groups:
        r = int(m.sum())
        s2 = d[m].var(ddof=1) if r > 1 else 0.0
        a = n * n * s2 / total_x**2
        a_terms.append(a / r)
        b_terms.append(a / n)
        counts.append((n, r))
    big_a, big_b = sum(a_terms), sum(b_terms)
    variance = max(big_a - big_b, 0.0)
    se = math.sqrt(variance)
    if big_a > 0:
        factor = 4 * big_a / (big_a + 3 * big_b)
        more = sum(min(n, math.ceil(factor * r)) - r for (n, r), a in zip(counts, a_terms) if a > 0)
    else:
        more = 0
    weights = np.concatenate([np.full(int((x[m] > 0).sum()), n / m.sum()) for n, m in groups])
    census = all(r == n for (n, r), (_, m) in zip(counts, groups) if (x[m] > 0).any())
    return {
        "estimate": ratio,
        "ci95": [ratio, ratio] if census else wilson_interval(ratio, _effective_size(ratio, variance, weights)),
        "standard_error": se,
        "reviews": int((x > 0).sum()),
        "more_reviews_to_halve_ci": int(more),
    }


def _effective_size(ratio: float, variance: float, weights: np.ndarray) -> float:
    """The design's effective sample size: the binomial one matching ``variance``, or Kish's at 0 and 1."""
    if 0.0 < ratio < 1.0 and variance > 0:
        return ratio * (1 - ratio) / variance
    return float(weights.sum() ** 2 / (weights**2).sum()) if len(weights) else 0.0


def wilson_interval(p: float, n: float, z: float = Z_95) -> list[float]:
    """Wilson's score interval for a proportion ``p`` seen on an (effective) sample of size ``n``.

    Args:
      p: the estimate, in [0, 1].
      n: the (effective) number of observations; 0 or less gives [0, 1].
      z: the normal quantile (1.96 for 95%).

    Returns:
      ``[low, high]`` within [0, 1]; never of zero width at p = 0 or 1 for a finite ``n``.
    """
    if n <= 0:
        return [0.0, 1.0]
    if math.isinf(n):
        return [p, p]
    p = min(max(p, 0.0), 1.0)
    z2 = z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return [max(0.0, center - half), min(1.0, center + half)]


def estimate_quality(
    *,
    predicted: Sequence[str],
    flagged: Sequence[bool | None],
    human: Sequence[str],
    strata: Sequence[str],
    sizes: Mapping[str, int],
    labels: Sequence[str],
    benign: str,
    human_targets: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Every whole-run estimate from the reviewed records (one entry per reviewed record in each sequence).

    Args:
      predicted: the run's top label of each record.
      flagged: the run's ``flagged`` (None where the run had no thresholds).
      human: the reviewer's label.
      strata: the record's ``review_reason``.
      sizes: records in the run per stratum.
      labels: the model's labels; ``benign`` is the one that is not harmful (a flag on it is a false positive).
      human_targets: the reviewer's target groups of each record, if given.

    Returns:
      ``label_distribution`` (share of each human label), ``accuracy``, ``per_label`` precision and recall,
      ``flagged`` precision and recall (harmful = any human label but ``benign``), ``targets`` (share of each
      group among harmful records) when ``human_targets`` is given; each a :func:`stratified_ratio`.
    """
    predicted, human = np.asarray(predicted, object), np.asarray(human, object)
    stratum = np.asarray(strata, object)
    ones = np.ones(len(human))
    harmful = human != benign

    def ratio(y, x) -> dict[str, Any]:
        return stratified_ratio(np.asarray(y, float), np.asarray(x, float), stratum, sizes)

    out: dict[str, Any] = {
        "label_distribution": {c: ratio(human == c, ones) for c in labels},
        "accuracy": ratio(predicted == human, ones),
        "per_label": {
            c: {
                "precision": ratio((predicted == c) & (human == c), predicted == c),
                "recall": ratio((predicted == c) & (human == c), human == c),
            }
            for c in labels
        },
    }
    if all(f is not None for f in flagged):
        flags = np.asarray(flagged, bool)
        out["flagged"] = {
            "precision": ratio(flags & harmful, flags),
            "recall": ratio(flags & harmful, harmful),
            "share": ratio(flags, ones),
        }
    if human_targets is not None:
        groups = sorted({g for targets in human_targets for g in targets})
        out["targets"] = {
            g: ratio(harmful & np.array([g in t for t in human_targets], bool), harmful) for g in groups
        }
    return out
