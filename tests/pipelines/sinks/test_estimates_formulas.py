"""The estimator on small reviewed samples worked out by hand, where test_estimates.py judges it by coverage.

:func:`stratified_ratio` against its module's formulas written out here: the Hajek ratio over strata,
its variance with the finite-population correction, Wilson's interval on the effective sample size,
the reviews said to halve the interval, and Kish's effective size where the ratio is 0 or 1.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from pipelines.sinks.estimates import stratified_ratio

Z = 1.959963984540054  # the normal 97.5% quantile


def wilson(p: float, n: float) -> list[float]:
    center = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return [max(0.0, center - half), min(1.0, center + half)]


# Stratum a: 20 records in the run, 4 reviewed; stratum b: 60 in the run, 5 reviewed.
SIZES = {"a": 20, "b": 60}
STRATA = ["a"] * 4 + ["b"] * 5
Y = [1, 0, 1, 1, 0, 1, 0, 0, 1]
X = [1, 1, 1, 1, 1, 1, 0, 1, 1]


def by_hand() -> dict[str, float]:
    groups = {h: [i for i, s in enumerate(STRATA) if s == h] for h in SIZES}
    mean = lambda v, rows: sum(v[i] for i in rows) / len(rows)  # noqa: E731
    total_x = sum(SIZES[h] * mean(X, rows) for h, rows in groups.items())
    ratio = sum(SIZES[h] * mean(Y, rows) for h, rows in groups.items()) / total_x
    d = [y - ratio * x for y, x in zip(Y, X)]
    a_terms = {h: SIZES[h] ** 2 * statistics.variance([d[i] for i in rows]) / total_x**2 for h, rows in groups.items()}
    r = {h: len(rows) for h, rows in groups.items()}
    big_a = sum(a_terms[h] / r[h] for h in SIZES)
    big_b = sum(a_terms[h] / SIZES[h] for h in SIZES)
    m = 4 * big_a / (big_a + 3 * big_b)
    more = sum(min(SIZES[h], math.ceil(m * r[h])) - r[h] for h in SIZES)
    return {"ratio": ratio, "variance": big_a - big_b, "more": more, "m": m}


def test_the_ratio_its_variance_and_interval_follow_the_stratified_formulas():
    expected = by_hand()
    result = stratified_ratio(np.array(Y, float), np.array(X, float), np.array(STRATA, object), SIZES)
    assert result["estimate"] == pytest.approx(expected["ratio"], rel=1e-12)
    # (1 - r_h / N_h) is 0.8 and 0.917 here: without the correction the variance would be 1.11x larger.
    assert result["standard_error"] == pytest.approx(math.sqrt(expected["variance"]), rel=1e-12)
    ratio = expected["ratio"]
    assert result["ci95"] == pytest.approx(wilson(ratio, ratio * (1 - ratio) / expected["variance"]), rel=1e-12)
    assert result["reviews"] == sum(X)


def test_the_reviews_to_halve_the_interval_count_the_correction():
    expected = by_hand()
    # The correction makes m = 4A / (A + 3B) = 3.09 here, not 4: ceil(3.09 * 4) - 4 = 9 more in stratum a and
    # ceil(3.09 * 5) - 5 = 11 in b, 20 in all, where m = 4 would say 12 + 15 = 27.
    assert 3.05 < expected["m"] < 3.15 and expected["more"] == 20
    result = stratified_ratio(np.array(Y, float), np.array(X, float), np.array(STRATA, object), SIZES)
    assert result["more_reviews_to_halve_ci"] == expected["more"]


@pytest.mark.parametrize("value", [1.0, 0.0])
def test_at_0_and_1_the_interval_uses_kishs_effective_size(value):
    # 4 reviewed records of stratum a weigh 20 / 4 = 5 each, 3 of stratum b 60 / 3 = 20 each.
    strata = np.array(["a"] * 4 + ["b"] * 3, object)
    result = stratified_ratio(np.full(7, value), np.ones(7), strata, SIZES)
    kish = (4 * 5 + 3 * 20) ** 2 / (4 * 5**2 + 3 * 20**2)  # 80^2 / 1300 = 4.92, not the 7 records
    assert result["estimate"] == value and result["standard_error"] == 0.0
    bound = kish / (kish + Z * Z)
    assert result["ci95"] == pytest.approx([bound, 1.0] if value else [0.0, 1 - bound], rel=1e-12)
