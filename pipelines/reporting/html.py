"""The run report's figures (PNG) and its page: one self-contained HTML file, no scripts, no network.

Every image is embedded in the page as a ``data:`` URI (and also written beside
it as ``report-*.png``), styles are inline and nothing is fetched, so the page
renders the same from a bucket, a mail attachment or an air-gapped laptop.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Mapping

import numpy as np

from pipelines.names import REPORT_PNG_PREFIX
from pipelines.reporting.data import RunData

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f3f3f3}.num{text-align:right}.alert{color:#b00020;font-weight:bold}img{max-width:100%}"
    "code{background:#f6f6f6;padding:0 .2em}"
)


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


def figures(run: RunData, summary: Mapping[str, Any], previous: RunData | None) -> dict[str, bytes]:
    """PNG name -> bytes: labels, one score histogram per class, target groups when the run has them."""
    plt = _pyplot()
    out = {}
    fig, ax = plt.subplots(figsize=(6, 3))
    counts = [summary["label_counts"][c] for c in run.labels]
    ax.bar(run.labels, counts, color="#4c72b0")
    flagged = "" if summary["flagged_share"] is None else f", flagged {100 * summary['flagged_share']:.1f}%"
    ax.set_title(f"{summary['labeled']} records labeled{flagged}")
    ax.set_ylabel("records")
    out[f"{REPORT_PNG_PREFIX}labels.png"] = _png(fig)
    bins = np.linspace(0, 1, 41)
    for c in run.labels:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(run.rows.column(c).to_numpy(), bins=bins, density=True, alpha=0.7, label="this run")
        if previous is not None and c in previous.labels:
            earlier = previous.rows.column(c).to_numpy()
            ax.hist(earlier, bins=bins, density=True, histtype="step", color="k", label="earlier run")
            ax.legend()
        ax.set_title(f"score of {c}")
        ax.set_xlabel("score")
        ax.set_ylabel("density")
        out[f"{REPORT_PNG_PREFIX}scores-{c}.png"] = _png(fig)
    if summary["targets"]:
        fig, ax = plt.subplots(figsize=(6, 3))
        groups = list(summary["targets"])
        ax.barh(groups, [100 * summary["targets"][g]["share_of_flagged"] for g in groups], color="#dd8452")
        ax.set_xlabel("% of flagged records")
        ax.set_title("target groups among flagged records")
        out[f"{REPORT_PNG_PREFIX}targets.png"] = _png(fig)
    return out


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any, tag: str) -> str:
        if isinstance(value, float):
            return f'<{tag} class="num">{value:.4g}</{tag}>'
        if isinstance(value, int):
            return f'<{tag} class="num">{value}</{tag}>'
        return f"<{tag}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(name: str, data: bytes) -> str:
    encoded = base64.b64encode(data).decode()
    return f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}"></p>'


def _drift_section(drift: Mapping[str, Any], max_drift: float | None) -> str:
    parts = [f"<h2>Drift against {html.escape(drift['compare_to'])}</h2>"]
    rows = [[c, d["previous_share"], d["share"], d["change"], d["p_value"]] for c, d in drift["shares"].items()]
    parts.append(_table(["label", "earlier share", "share", "change", "p-value (two-proportion z)"], rows))
    if drift["targets"]:
        rows = [[g, d["previous_share"], d["share"], d["change"], d["p_value"]] for g, d in drift["targets"].items()]
        parts.append(_table(["target group (of flagged)", "earlier share", "share", "change", "p-value"], rows))
    parts.append(_table(["distribution", "PSI"], [[name, value] for name, value in drift["psi"].items()]))
    worst = drift["max_psi"]
    if max_drift is not None and worst["value"] > max_drift:
        name = html.escape(worst["name"])
        parts.append(f'<p class="alert">Drift: PSI of {name} {worst["value"]:.3f} exceeds --max_drift {max_drift}</p>')
    return "".join(parts)


def page(
    summary: Mapping[str, Any], images: Mapping[str, bytes], drift: Mapping[str, Any] | None, max_drift: float | None
) -> str:
    """The report as one HTML document.

    Args:
      summary: :func:`pipelines.reporting.data.describe` of the run.
      images: :func:`figures`, embedded as ``data:`` URIs.
      drift: :func:`pipelines.reporting.data.drift` against the earlier run, or None.
      max_drift: ``--max_drift``, to mark a drift above it.

    Returns:
      The page's HTML.
    """
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Moderation run report</title>"
        f"<style>{_STYLE}</style></head><body><h1>Moderation run report</h1>",
        f"<p>Run: <code>{html.escape(summary['input'])}</code></p>",
        "<h2>Records</h2>",
    ]
    flagged = "n/a (no thresholds)"
    if summary["flagged"] is not None:
        flagged = f"{summary['flagged']} ({100 * summary['flagged_share']:.2f}%)"
    parts.append(
        _table(
            ["records read", "labeled", "dead-lettered", "flagged"],
            [[summary["records"], summary["labeled"], summary["dead_letters"]["total"], flagged]],
        )
    )
    rows = [[c, summary["label_counts"][c], summary["label_shares"][c]] for c in summary["labels"]]
    parts.append(_table(["label", "records", "share"], rows))
    parts.append("<h2>Model</h2>")
    models = [[m, n] for m, n in summary["models"].items()]
    parts.append(_table(["model (name@weights hash:precision)", "records"], models))
    parts.extend(_image(name, data) for name, data in images.items() if "targets" not in name)
    parts.append("<h2>Target groups among flagged records</h2>")
    if summary["targets"]:
        rows = [[g, t["flagged"], t["share_of_flagged"]] for g, t in summary["targets"].items()]
        parts.append(_table(["group", "flagged records", "share of flagged"], rows))
        parts.extend(_image(name, data) for name, data in images.items() if "targets" in name)
    else:
        parts.append(
            "<p>Not available: the labels have no <code>target_*</code> columns (the model has no target-group head), "
            "or the run had no flag thresholds.</p>"
        )
    parts.append("<h2>Dead letters</h2>")
    dead = summary["dead_letters"]
    reasons = list(dead["by_reason"].items())
    parts.append(_table(["reason", "records"], reasons) if reasons else "<p>None.</p>")
    examples = [
        [reason, e["source"], e["position"], e["detail"], e["payload"]]
        for reason, kept in dead["examples"].items()
        for e in kept
    ]
    if examples:
        parts.append(_table(["reason", "source", "position", "detail", "payload (start)"], examples))
    if drift is not None:
        parts.append(_drift_section(drift, max_drift))
    parts.append("</body></html>")
    return "\n".join(parts)
