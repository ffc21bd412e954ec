"""The run report's page: one self-contained HTML file, no scripts, no network.

Every image (:mod:`pipelines.reporting.figures`) is embedded in the page as a
``data:`` URI (and also written beside it as ``report-*.png``), styles are
inline and nothing is fetched, so the page renders the same from a bucket, a
mail attachment or an air-gapped laptop.  Every share reads as a percentage
(``8.33%``), a change of share in percentage points, and every count of records
beside its share.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Mapping, Sequence

from pipelines.names import FLAGGED_STRATUM, HUMAN_LABEL, LABEL_STRATUM_PREFIX, NEAR_THRESHOLD_STRATUM
from pipelines.reporting.figures import percent

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f3f3f3}.num{text-align:right;white-space:nowrap}.alert{color:#b00020;font-weight:bold}"
    "img{max-width:100%}code{background:#f6f6f6;padding:0 .2em;overflow-wrap:anywhere}.note{color:#555}"
    "td.payload{font-family:monospace;overflow-wrap:anywhere;max-width:30em}.flag{white-space:nowrap}"
)


class Num(str):
    """A formatted number: right-aligned in its table cell."""


class Markup(str):
    """A cell's HTML, written as it is (not escaped)."""


def _count(n: int, share: float | None = None) -> Num:
    """``5`` or ``5 (8.33%)``."""
    return Num(f"{n:,}" if share is None else f"{n:,} ({percent(share)})")


def _p_value(p: float) -> Num:
    return Num("<0.0001" if p < 1e-4 else f"{p:.4f}")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, classes: Mapping[int, str] | None = None) -> str:
    """An HTML table; :class:`Num` and int cells right-aligned, ``classes`` maps a column to a CSS class."""

    def cell(value: Any, tag: str, column: int) -> str:
        css = ["num"] if isinstance(value, (Num, int)) else []
        css += [classes[column]] if classes and column in classes and tag == "td" else []
        text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        attribute = f' class="{" ".join(css)}"' if css else ""
        return f"<{tag}{attribute}>{text if isinstance(value, Markup) else html.escape(text)}</{tag}>"

    head = "".join(cell(h, "th", i) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell(v, "td", i) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(name: str, data: bytes) -> str:
    encoded = base64.b64encode(data).decode()
    return f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}"></p>'


def _records(summary: Mapping[str, Any]) -> list[str]:
    read, labeled, dead = summary["records"], summary["labeled"], summary["dead_letters"]["total"]
    flagged = "n/a (no thresholds)"
    if summary["flagged"] is not None:
        flagged = _count(summary["flagged"], summary["flagged_share"])
    rows = [[_count(read), _count(labeled, labeled / max(read, 1)), _count(dead, dead / max(read, 1)), flagged]]
    return [
        "<h2>Records</h2>",
        table(["records read", "labeled (of read)", "dead-lettered (of read)", "flagged (of labeled)"], rows),
    ]


def _scores(summary: Mapping[str, Any], images: Mapping[str, bytes], thresholds: Mapping[str, Any] | None) -> list[str]:
    parts = [
        "<h2>Scores</h2>",
        "<p class='note'>Records per score bin (this run in colour; an earlier run, when compared, as a black "
        "outline scaled to this run's size). Beside a class with a flag threshold: the records at or above it, "
        "on a log-scaled count axis.</p>",
    ]
    if thresholds is not None:
        unknown = "unknown" if thresholds["differing"] is None else "none"
        values = ", ".join(f"{c} {t:.4g}" for c, t in thresholds["thresholds"].items()) or unknown
        parts.append(f"<p>Thresholds: <b>{html.escape(values)}</b>, {html.escape(thresholds['source'])}.</p>")
        if thresholds["differing"]:
            parts.append(
                f"<p class='alert'>These thresholds flag {thresholds['differing']:,} records otherwise than the run "
                "did: they are not the run's.</p>"
            )
    parts.extend(_image(name, data) for name, data in images.items() if "-scores-" in name)
    return parts


def _targets(summary: Mapping[str, Any], images: Mapping[str, bytes]) -> list[str]:
    parts = ["<h2>Target groups among flagged records</h2>"]
    if not summary["targets"]:
        parts.append(
            "<p>Not available: the labels have no <code>target_*</code> columns (the model has no target-group head), "
            "or the run had no flag thresholds.</p>"
        )
        return parts
    rows = [[g, _count(t["flagged"]), Num(percent(t["share_of_flagged"]))] for g, t in summary["targets"].items()]
    parts.append(table(["group", "flagged records", "share of flagged"], rows))
    parts.extend(_image(name, data) for name, data in images.items() if name.endswith("targets.png"))
    return parts


def _stratum_meaning(stratum: str) -> str:
    if stratum == NEAR_THRESHOLD_STRATUM:
        return Markup("a class score within <span class='flag'>--review_band</span> of its threshold")
    if stratum == FLAGGED_STRATUM:
        return "flagged, not near a threshold"
    if stratum.startswith(LABEL_STRATUM_PREFIX):
        return f"top label {stratum[len(LABEL_STRATUM_PREFIX):]}, neither flagged nor near a threshold"
    return ""


def _review(review: Mapping[str, Any] | None) -> list[str]:
    parts = ["<h2>Review sample</h2>"]
    if review is None:
        parts.append("<p>The run drew none (<code>moderate --review_sample N</code> draws one).</p>")
        return parts
    files = "<br>".join(f"<code>{html.escape(f)}</code>" for f in review["files"])
    share = percent(review["drawn"] / review["records"]) if review["records"] else percent(0.0)
    parts.append(
        f"<p>{review['drawn']:,} records ({share}) drawn for human review from the run's {review['records']:,}, "
        "by strata, each record with a known inclusion probability.</p>"
        f"<p>File{'s' if len(review['files']) > 1 else ''}: {files}</p>"
    )
    rows = []
    for stratum, s in review["strata"].items():
        low, high = s["inclusion_probability"]
        probability = percent(high) if s["consistent"] else f"{percent(low)} to {percent(high)}"
        weight = "" if s["weight"] is None else Num(f"{s['weight']:.3g}")
        labels = ", ".join(f"{c} {n}" for c, n in s["labels"].items())
        rows.append([stratum, _stratum_meaning(stratum), _count(s["records"] or 0), _count(s["drawn"]),
                     Num(probability), weight, labels])  # fmt: skip
    rows.append(["all", "", _count(review["records"]), _count(review["drawn"]), "", "", ""])
    header = ["stratum", "holds", "records in the run", "drawn", "inclusion probability",
              "records each stands for", "model's labels of those drawn"]  # fmt: skip
    parts.append(table(header, rows))
    if any(not s["consistent"] for s in review["strata"].values()):
        parts.append("<p class='alert'>A stratum's inclusion probabilities differ: the file was edited.</p>")
    if review["records"] != review["labeled"]:
        parts.append(
            f"<p class='alert'>The strata hold {review['records']:,} records but the run labeled "
            f"{review['labeled']:,}: the sample is not this run's.</p>"
        )
    parts.append(
        f"<p class='note'>Reviewers fill in <code>{HUMAN_LABEL}</code> in a copy of the file; "
        "<code>moderate-evaluate --reviewed FILE --output DIR</code> then estimates the whole run's precision and "
        "prevalence, each reviewed record standing for the records shown above.</p>"
    )
    return parts


def _dead_letters(summary: Mapping[str, Any]) -> list[str]:
    parts = ["<h2>Dead letters</h2>"]
    dead, read = summary["dead_letters"], summary["records"]
    if not dead["by_reason"]:
        return parts + ["<p>None.</p>"]
    rows = [[reason, _count(n, n / max(read, 1))] for reason, n in dead["by_reason"].items()]
    parts.append(table(["reason", "records (of read)"], rows))
    examples = [
        [reason, e["source"], e["position"], e["detail"], e["payload"]]
        for reason, kept in dead["examples"].items()
        for e in kept
    ]
    parts.append(table(["reason", "source", "position", "detail", "payload (start)"], examples, classes={4: "payload"}))
    return parts


def _drift(drift: Mapping[str, Any], max_drift: float | None) -> list[str]:
    def share_rows(shares: Mapping[str, Mapping[str, float]]) -> list[list[Any]]:
        return [
            [c, Num(percent(d["previous_share"])), Num(percent(d["share"])), Num(f"{100 * d['change']:+.2f} pp"),
             _p_value(d["p_value"])]
            for c, d in shares.items()
        ]  # fmt: skip

    parts = [f"<h2>Drift against {html.escape(drift['compare_to'])}</h2>"]
    header = ["earlier share", "share", "change", "p-value (two-proportion z)"]
    parts.append(table(["label", *header], share_rows(drift["shares"])))
    if drift["targets"]:
        parts.append(table(["target group (of flagged)", *header], share_rows(drift["targets"])))
    psi = [[name, Num(f"{value:.3f}")] for name, value in drift["psi"].items()]
    parts.append(table(["distribution", "PSI (below 0.1 stable, above 0.25 a real shift)"], psi))
    worst = drift["max_psi"]
    if max_drift is not None and worst["value"] > max_drift:
        name = html.escape(worst["name"])
        parts.append(f'<p class="alert">Drift: PSI of {name} {worst["value"]:.3f} exceeds --max_drift {max_drift}</p>')
    return parts


def page(
    summary: Mapping[str, Any],
    images: Mapping[str, bytes],
    drift: Mapping[str, Any] | None,
    max_drift: float | None,
    *,
    review: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Any] | None = None,
) -> str:
    """The report as one HTML document.

    Args:
      summary: :func:`pipelines.reporting.data.describe` of the run.
      images: :func:`pipelines.reporting.figures.figures`, embedded as ``data:`` URIs.
      drift: :func:`pipelines.reporting.data.drift` against the earlier run, or None.
      max_drift: ``--max_drift``, to mark a drift above it.
      review: :func:`pipelines.reporting.review.describe_review` of the run (None: it drew no sample).
      thresholds: :func:`pipelines.reporting.thresholds.run_thresholds`, said above the score figures.

    Returns:
      The page's HTML.
    """
    counts, shares = summary["label_counts"], summary["label_shares"]
    labels = [[c, _count(counts[c]), Num(percent(shares[c]))] for c in summary["labels"]]
    models = [[m, _count(n)] for m, n in summary["models"].items()]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Moderation run report</title>"
        f"<style>{_STYLE}</style></head><body><h1>Moderation run report</h1>",
        f"<p>Run: <code>{html.escape(summary['input'])}</code></p>",
        *_records(summary),
        "<h2>Labels</h2>",
        table(["label", "records", "share (of labeled)"], labels),
        *(_image(name, data) for name, data in images.items() if name.endswith("-labels.png")),
        *_scores(summary, images, thresholds),
        "<h2>Model</h2>",
        table(["model (name@weights hash:precision)", "records"], models),
        *_targets(summary, images),
        *_review(review),
        *_dead_letters(summary),
        *(_drift(drift, max_drift) if drift is not None else []),
        "</body></html>",
    ]
    return "\n".join(parts)
