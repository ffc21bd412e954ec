"""What ``moderate-adapt`` says about a model it wrote: ``adapt_report.json`` and the folder's ``README.md`` card.

The before/after figures are the whole-run estimator's (:mod:`pipelines.sinks.estimates`) on the held-out
rows, in the user's own labels: reviewed rows stand for their strata's records, ``--train`` rows for a
population far larger than themselves (one stratum, no finite-population correction).  The starting model
flags with its own recommended thresholds, the adapted one with those chosen on the same rows.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from flaxmodel import mapped_benign, mapped_predictions, recommended_thresholds
from pipelines.sinks.estimates import estimate_quality

# Records a --train row's stratum stands for: far more than the rows, so the correction vanishes.
_UNSAMPLED_POPULATION = 10**12


def _flags(probabilities: np.ndarray, classes: Sequence[str], thresholds: dict[str, float]) -> list[bool | None]:
    if not thresholds:
        return [None] * len(probabilities)
    columns = [(list(classes).index(c), t) for c, t in thresholds.items() if c in classes]
    return [bool(any(row[i] >= t for i, t in columns)) for row in probabilities]


def _estimates(outcome, probabilities: np.ndarray, thresholds: dict[str, float], benign: str | None) -> dict[str, Any]:
    rows, held = outcome.rows, outcome.held
    names = list(outcome.names)
    predicted = mapped_predictions(probabilities, outcome.label_map, outcome.classes)
    if rows.sizes is None:
        strata, sizes = ["rows"] * len(held), {"rows": _UNSAMPLED_POPULATION}
    else:
        strata, sizes = rows.strata[held].tolist(), rows.sizes
    figures = estimate_quality(
        predicted=[names[i] if i >= 0 else "(none of yours)" for i in predicted],
        flagged=_flags(probabilities, outcome.classes, thresholds) if benign else [None] * len(held),
        human=[names[i] for i in rows.labels[held]],
        strata=strata,
        sizes=sizes,
        labels=names,
        benign=benign or "",
    )
    f1 = [_f1(figures["per_label"][n]) for n in names if figures["label_distribution"][n]["estimate"]]
    figures["macro_f1"] = float(np.mean([v for v in f1 if v is not None])) if any(v is not None for v in f1) else None
    return figures


def _f1(per_label: dict[str, Any]) -> float | None:
    p, r = per_label["precision"]["estimate"], per_label["recall"]["estimate"]
    if p is None or r is None:
        return None
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def adapt_report(outcome, benign_label: str) -> dict[str, Any]:
    """The run's report: data, selection, before/after estimates, learning curve, thresholds, gaps.

    Args:
      outcome: :class:`flaxmodel.training.AdaptOutcome`.
      benign_label: the model's class that is not harmful.
    """
    benign = mapped_benign(outcome.label_map, benign_label)
    adapted = {c: t["threshold"] for c, t in outcome.thresholds.items() if t["threshold"] is not None}
    present = set(outcome.rows.labels.tolist())
    named = {c for allowed in outcome.label_map.values() for c in allowed}
    report = {
        "start_model": outcome.start,
        "output": outcome.output,
        "data": {**outcome.rows.record, "held_out_rows": len(outcome.held), "folds": outcome.folds, "unlabeled": outcome.unlabeled},
        "label_map": {k: list(v) for k, v in outcome.label_map.items()},
        "selection": outcome.selection,
        "chosen": outcome.chosen,
        "after": _estimates(outcome, outcome.after, adapted, benign),
        "learning_curve": outcome.curve,
        "thresholds": outcome.thresholds,
        "target_head": outcome.target_head or "the starting model's, its scores held",
        "not_covered": {
            "your_labels_without_rows": [n for i, n in enumerate(outcome.names) if i not in present],
            "classes_no_label_names": [c for c in outcome.classes if c not in named],
        },
        "seconds": round(outcome.seconds, 1),
        "phases_seconds": outcome.phases,
    }
    if outcome.before is not None:
        report["before"] = _estimates(outcome, outcome.before, recommended_thresholds(outcome.start), benign)
    return report


def _cell(figure: dict[str, Any] | None) -> str:
    if not figure or figure.get("estimate") is None:
        return "n/a"
    low, high = figure["ci95"]
    return f"{100 * figure['estimate']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def comparison_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(figure, before, after)`` rows of the report's estimates (95% intervals in brackets)."""
    before, after = report.get("before"), report["after"]

    def pick(figures, *path):
        for key in path:
            figures = None if figures is None else figures.get(key)
        return figures

    rows = [("accuracy", _cell(pick(before, "accuracy")), _cell(after["accuracy"]))]
    macro = (before or {}).get("macro_f1")
    rows.append(("macro F1", "n/a" if macro is None else f"{100 * macro:.1f}%", "n/a" if after["macro_f1"] is None else f"{100 * after['macro_f1']:.1f}%"))
    for name in report["label_map"]:
        for kind in ("precision", "recall"):
            rows.append((f"{name} {kind}", _cell(pick(before, "per_label", name, kind)), _cell(after["per_label"][name][kind])))
    if "flagged" in after:
        for kind in ("precision", "recall"):
            rows.append((f"flagged {kind}", _cell(pick(before, "flagged", kind)), _cell(after["flagged"][kind])))
    return rows


def _target_line(head: dict[str, Any] | str) -> str:
    if isinstance(head, str):
        return "- The starting model's target-group head is kept unchanged; training held its scores on every row."
    chosen = [f"{g} ({t['attacks']} attacks, F1 {100 * t['f1']:.1f}%)" for g, t in head.items() if t["chosen_on"] == "held-out rows"]
    return (
        "- The target-group head was re-fitted on the groups your rows name; thresholds re-chosen on the held-out "
        f"rows for {', '.join(chosen) or 'no group (too few attacks held out)'}, the starting model's for the rest."
    )


def model_card(report: dict[str, Any]) -> str:
    """The adapted folder's ``README.md``: starting model, rows and map, before/after, curve, gaps."""
    data, gaps = report["data"], report["not_covered"]
    maps = ", ".join(f"`{k}` = {' or '.join(v)}" for k, v in report["label_map"].items())
    lines = [
        "# Adapted model",
        "",
        f"Adapted by `moderate-adapt` from `{report['start_model']}` on {data['rows']} {data['kind']} rows "
        f"({', '.join(data['files'])}); {data['unlabeled']} unlabeled texts kept the starting model's scores.",
        "",
        f"Label map: {maps}.  Chosen on {data['held_out_rows']} held-out rows"
        + (f" ({data['folds']} folds)" if data["folds"] > 1 else "")
        + f": learning rate {report['chosen']['learning_rate']:g}, {report['chosen']['epochs']} epochs.",
        "",
        "## Before and after, on the held-out rows (95% intervals)",
        "",
        "| figure | starting model | adapted |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in comparison_rows(report)],
        "",
        "## Learning curve (held-out macro F1)",
        "",
        *[f"- {round(100 * p['share'])}% of the rows ({p['rows']}): {100 * p['macro_f1']:.1f}" for p in report["learning_curve"]],
        "",
        "## Thresholds",
        "",
        *[
            f"- `{c}`: " + ("none reaches the target" if t["threshold"] is None else f"{t['threshold']:.3f} (precision {100 * t['precision']:.1f}%, recall {100 * t['recall']:.1f}%)")
            for c, t in report["thresholds"].items()
        ],
        "",
        "## What the rows did not cover",
        "",
        f"- Your labels with no rows: {', '.join(gaps['your_labels_without_rows']) or 'none'}.",
        f"- Classes no label of yours names (kept as the starting model scores them): {', '.join(gaps['classes_no_label_names']) or 'none'}.",
        "- Any split a label leaves open (one label allowing several classes) follows the starting model.",
        _target_line(report["target_head"]),
        "",
    ]
    return "\n".join(lines)


def report_files(outcome, benign_label: str) -> dict[str, bytes]:
    """``adapt_report.json`` and ``README.md`` for the adapted folder."""
    report = adapt_report(outcome, benign_label)
    return {"adapt_report.json": json.dumps(report, indent=2).encode(), "README.md": model_card(report).encode()}
