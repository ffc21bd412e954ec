"""The run report's figures (PNG): labels, each class's scores in counts with the tail above its threshold,
target groups.

Every figure counts records, as a moderation lead reads them.  A class with a
flag threshold gets a second panel: the scores at or above the threshold on a
log-scaled count axis, where the rare records that get flagged sit and a linear
axis would show nothing.  An earlier run (``--compare_to``) is drawn as a
black outline scaled to this run's number of records, so runs of different
sizes compare by shape.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from pipelines.names import REPORT_PNG_PREFIX
from pipelines.reporting.data import RunData

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: moderate-report checks it is installed first
    from matplotlib.figure import Figure

BINS = 40
TAIL_BINS = 20
_BAR, _TAIL, _THRESHOLD, _TARGETS = "#4c72b0", "#c44e52", "#8c1c13", "#dd8452"


def percent(share: float) -> str:
    """``0.1167`` -> ``"11.67%"``; shares below 0.01% keep two significant digits (``"0.0012%"``)."""
    value = 100 * share
    return f"{value:.2f}%" if value == 0 or abs(value) >= 0.01 else f"{value:.2g}%"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    return buffer.getvalue()


def _counts_axis(ax, label: str, *, log: bool = False) -> None:
    from matplotlib import ticker

    ax.set_ylabel(label)
    if log:
        ax.set_yscale("log")
        # Whole record counts at 1, 2, 5, 10, 20, 50, ... as plain numbers, not powers of ten.
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else ""))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    else:
        ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))


def _scaled(earlier: np.ndarray, size: int) -> np.ndarray:
    """Weights that draw the earlier run's counts as if it had ``size`` records."""
    return np.full(len(earlier), size / len(earlier)) if len(earlier) else np.zeros(0)


def score_figure(name: str, scores: np.ndarray, earlier: np.ndarray | None, threshold: float | None) -> Figure:
    """One class's figure: its scores' histogram in records, and with a threshold the log-scaled tail beside it.

    Args:
      name: the class.
      scores: this run's scores of it.
      earlier: the earlier run's (drawn scaled to this run's size), or None.
      threshold: its flag threshold, or None (no tail panel).

    Returns:
      The matplotlib figure (:func:`figures` renders it; close it with ``pyplot.close``).
    """
    plt = _pyplot()
    panels = 1 if threshold is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.2), squeeze=False)
    ax = axes[0][0]
    ax.hist(scores, bins=np.linspace(0, 1, BINS + 1), color=_BAR, label=f"this run ({len(scores):,} records)")
    if earlier is not None:
        ax.hist(earlier, bins=np.linspace(0, 1, BINS + 1), weights=_scaled(earlier, len(scores)), histtype="step",
                color="k", label="earlier run, scaled to this run's size")  # fmt: skip
    ax.set_title(f"score of {name}")
    ax.set_xlabel("score")
    _counts_axis(ax, "records")
    if threshold is not None:
        ax.axvline(threshold, color=_THRESHOLD, linestyle="--", label=f"threshold {threshold:.3g}")
        _tail(axes[0][1], scores, earlier, threshold)
    ax.legend(fontsize=8)
    return fig


def _tail(ax, scores: np.ndarray, earlier: np.ndarray | None, threshold: float) -> None:
    """The records at or above ``threshold``, counted on a log scale."""
    top = max(1.0, threshold + 1e-6)
    bins = np.linspace(threshold, top, TAIL_BINS + 1)
    above = scores[scores >= threshold]
    counts, _, _ = ax.hist(above, bins=bins, color=_TAIL, label="this run")
    if earlier is not None:
        kept = earlier >= threshold
        ax.hist(earlier[kept], bins=bins, weights=_scaled(earlier, len(scores))[kept], histtype="step", color="k",
                label="earlier run, scaled")  # fmt: skip
        ax.legend(fontsize=8)
    share = percent(len(above) / len(scores)) if len(scores) else percent(0.0)
    ax.set_title(f"at or above {threshold:.3g}: {len(above):,} records ({share})")
    ax.set_xlabel("score")
    ax.set_xlim(threshold, top)
    # Limits first: an empty tail has no positive count for the log scale to fit.
    ax.set_ylim(0.5, max(5.0, 2 * float(np.max(counts, initial=0))))
    _counts_axis(ax, "records (log scale)", log=True)
    if not len(above):
        ax.text(0.5, 0.5, "no record at or above the threshold", ha="center", transform=ax.transAxes)


def figures(
    run: RunData, summary: Mapping[str, Any], previous: RunData | None, thresholds: Mapping[str, float] | None = None
) -> dict[str, bytes]:
    """PNG name -> bytes: labels, one score figure per class, target groups when the run has them.

    Args:
      run: the run.
      summary: :func:`pipelines.reporting.data.describe` of it.
      previous: the earlier run (``--compare_to``), drawn scaled, or None.
      thresholds: class -> flag threshold; those classes get the log-scaled tail panel.
    """
    plt = _pyplot()
    thresholds = thresholds or {}
    out = {}
    fig, ax = plt.subplots(figsize=(6, 3.2))
    counts = [summary["label_counts"][c] for c in run.labels]
    bars = ax.bar(run.labels, counts, color=_BAR)
    shares = [percent(summary["label_shares"][c]) for c in run.labels]
    ax.bar_label(bars, labels=[f"{n:,} ({s})" for n, s in zip(counts, shares)], fontsize=8)
    ax.margins(y=0.15)
    flagged = "" if summary["flagged_share"] is None else f", {percent(summary['flagged_share'])} flagged"
    ax.set_title(f"{summary['labeled']:,} records labeled{flagged}")
    _counts_axis(ax, "records")
    out[f"{REPORT_PNG_PREFIX}labels.png"] = _png(fig)
    for c in run.labels:
        earlier = previous.rows.column(c).to_numpy() if previous is not None and c in previous.labels else None
        scores = run.rows.column(c).to_numpy()
        out[f"{REPORT_PNG_PREFIX}scores-{c}.png"] = _png(score_figure(c, scores, earlier, thresholds.get(c)))
    if summary["targets"]:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        groups = list(summary["targets"])
        ax.barh(groups, [100 * summary["targets"][g]["share_of_flagged"] for g in groups], color=_TARGETS)
        ax.set_xlabel("% of flagged records")
        ax.set_title("target groups among flagged records")
        out[f"{REPORT_PNG_PREFIX}targets.png"] = _png(fig)
    return out
