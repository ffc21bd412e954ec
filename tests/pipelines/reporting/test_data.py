"""The report's drift statistics against computations written out here from their formulas.

The two-proportion p-value is checked against the normal tail integrated numerically (Simpson's rule on
the density, not ``erfc``); PSI against ``sum (p - q) ln(p / q)`` summed by hand, empty bins at 0.0001;
and :func:`drift` on two small runs whose shares, bins and p-values are worked out below.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from pipelines.reporting.data import RunData, drift, psi, score_psi, two_proportion_p
from pipelines.sinks.outputs import DEAD_LETTER_SCHEMA

LABELS = ("hate", "offensive", "neither")
FLOOR = 1e-4


def normal_tail(z: float, steps: int = 20_000) -> float:
    """P(Z > z) for z >= 0: Simpson's rule on the standard normal density over [z, z + 12]."""
    h = 12.0 / steps
    density = [math.exp(-((z + i * h) ** 2) / 2) / math.sqrt(2 * math.pi) for i in range(steps + 1)]
    return h / 3 * (density[0] + density[-1] + 4 * sum(density[1:-1:2]) + 2 * sum(density[2:-1:2]))


def p_value(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided, pooled: z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)), p = 2 P(Z > |z|)."""
    pooled = (k1 + k2) / (n1 + n2)
    z = (k1 / n1 - k2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return 2 * normal_tail(abs(z))


def psi_by_hand(current: list[float], previous: list[float]) -> float:
    total = 0.0
    for p, q in zip(current, previous):
        p, q = max(p, FLOOR), max(q, FLOOR)
        total += (p - q) * math.log(p / q)
    return total


def test_the_normal_tail_here_is_the_textbook_one():
    assert 2 * normal_tail(1.959963984540054) == pytest.approx(0.05, abs=1e-9)
    assert 2 * normal_tail(2.5758293035489) == pytest.approx(0.01, abs=1e-9)


@pytest.mark.parametrize("counts", [(60, 100, 45, 100), (12, 400, 30, 500), (3, 20, 0, 35), (500, 1000, 520, 1000)])
def test_two_proportion_p_value_is_the_pooled_two_sided_z_test(counts):
    assert two_proportion_p(*counts) == pytest.approx(p_value(*counts), rel=1e-7, abs=1e-12)
    k1, n1, k2, n2 = counts
    assert two_proportion_p(k2, n2, k1, n1) == pytest.approx(two_proportion_p(*counts), rel=1e-12)


def test_two_proportion_p_value_is_1_where_the_test_is_undefined_or_the_shares_equal():
    assert two_proportion_p(0, 0, 3, 10) == 1.0 and two_proportion_p(3, 10, 0, 0) == 1.0
    assert two_proportion_p(0, 10, 0, 20) == 1.0 and two_proportion_p(10, 10, 20, 20) == 1.0
    assert two_proportion_p(5, 10, 10, 20) == pytest.approx(1.0)


def test_psi_is_the_symmetric_divergence_with_empty_bins_at_the_floor():
    current, previous = [0.5, 0.3, 0.2, 0.0], [0.25, 0.25, 0.25, 0.25]
    assert psi(np.array(current), np.array(previous)) == pytest.approx(psi_by_hand(current, previous), rel=1e-12)
    # 0.25 ln 2 + 0.05 ln 1.2 - 0.05 ln 0.8, and the empty bin (0.0001 - 0.25) ln(0.0001 / 0.25) = 1.9552.
    assert psi_by_hand(current, previous) == pytest.approx(0.1733 + 0.0091 + 0.0112 + 1.9552, abs=2e-4)
    assert psi(np.array(previous), np.array(current)) == pytest.approx(psi_by_hand(current, previous), rel=1e-12)
    assert psi(np.array(previous), np.array(previous)) == 0.0


def test_score_psi_bins_at_the_earlier_runs_deciles():
    # 1,000 evenly spread earlier scores: each decile bin holds 10% of them.  The current scores sit mid-bin.
    previous = (np.arange(1000) + 0.5) / 1000
    current = np.array([0.05] * 30 + [0.45] * 20 + [0.95] * 50)
    shares = [0.3, 0, 0, 0, 0.2, 0, 0, 0, 0, 0.5]
    assert score_psi(current, previous) == pytest.approx(psi_by_hand(shares, [0.1] * 10), rel=1e-9)
    assert score_psi(previous, previous) == 0.0 and score_psi(np.array([]), previous) == 0.0


def test_a_score_on_a_decile_edge_falls_in_the_bin_above_it():
    # Earlier scores at 0.2 and 0.8 only: the deciles (edges) are 0.2, 0.5 and 0.8, so four bins, and the
    # earlier run holds half in [0.2, 0.5) and half in [0.8, 1].
    previous = np.array([0.2] * 50 + [0.8] * 50)
    current = np.array([0.3] * 20 + [0.8] * 80)
    expected = psi_by_hand([0, 0.2, 0, 0.8], [0, 0.5, 0, 0.5])
    assert score_psi(current, previous) == pytest.approx(expected, rel=1e-9)


def _run(name: str, labels: list[str], flagged: list[bool], hate: list[float], religion: list[bool]) -> RunData:
    n = len(labels)
    spread = np.tile(np.linspace(0.0, 1.0, 100), n // 100).astype(np.float32)
    rows = pa.table(
        {
            "label": pa.array(labels, pa.string()),
            "score": pa.array(np.full(n, 0.9, np.float32)),
            "hate": pa.array(np.asarray(hate, np.float32)),
            "offensive": pa.array(spread),
            "neither": pa.array(spread[::-1].copy()),
            "flagged": pa.array(flagged, pa.bool_()),
            "model": pa.array(["m@x:float32"] * n, pa.string()),
            "target_religion": pa.array(np.where(religion, 0.9, 0.1).astype(np.float32)),
            "targets": pa.array([["religion"] if r else [] for r in religion], pa.list_(pa.string())),
        }
    )
    return RunData(name, LABELS, rows, DEAD_LETTER_SCHEMA.empty_table())


def test_drift_between_two_runs_matches_the_formulas():
    # Earlier: 100 records (20 hate, 30 offensive, 50 neither), 40 flagged, 10 of them naming religion.
    then = _run(
        "earlier", ["hate"] * 20 + ["offensive"] * 30 + ["neither"] * 50, [True] * 40 + [False] * 60,
        [0.2] * 50 + [0.8] * 50, [True] * 10 + [False] * 90,
    )  # fmt: skip
    # Now: 200 records (60 hate, 40 offensive, 100 neither), 90 flagged, 20 of them (and 10 unflagged) naming religion.
    now = _run(
        "current", ["hate"] * 60 + ["offensive"] * 40 + ["neither"] * 100, [True] * 90 + [False] * 110,
        [0.3] * 40 + [0.8] * 160, [True] * 20 + [False] * 70 + [True] * 10 + [False] * 100,
    )  # fmt: skip
    result = drift(now, then)
    assert result["compare_to"] == "earlier"
    counts = {"hate": (60, 20), "offensive": (40, 30), "neither": (100, 50), "(flagged)": (90, 40)}
    assert set(result["shares"]) == set(counts)
    for name, (k1, k2) in counts.items():
        row = result["shares"][name]
        assert row["share"] == pytest.approx(k1 / 200) and row["previous_share"] == pytest.approx(k2 / 100), name
        assert row["change"] == pytest.approx(k1 / 200 - k2 / 100), name
        assert row["p_value"] == pytest.approx(p_value(k1, 200, k2, 100), rel=1e-7), name
    # Target groups are shares of the flagged records: 20 of 90 now, 10 of 40 before.
    religion = result["targets"]["religion"]
    assert religion["share"] == pytest.approx(20 / 90) and religion["previous_share"] == pytest.approx(10 / 40)
    assert religion["p_value"] == pytest.approx(p_value(20, 90, 10, 40), rel=1e-7)
    labels_psi = psi_by_hand([0.3, 0.2, 0.5], [0.2, 0.3, 0.5])
    hate_psi = psi_by_hand([0, 0.2, 0, 0.8], [0, 0.5, 0, 0.5])
    assert result["psi"] == pytest.approx(
        {"label distribution": labels_psi, "hate score": hate_psi, "offensive score": 0.0, "neither score": 0.0}, rel=1e-9
    )
    assert hate_psi > labels_psi
    assert result["max_psi"] == {"name": "hate score", "value": pytest.approx(hate_psi, rel=1e-9)}
