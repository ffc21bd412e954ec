"""Quality of each precision path on labelled texts: agreement with float32, and the F1 figures.

Loads the model once per precision (``float32``, ``bfloat16``, ``int8``; see
``flaxmodel.core.precision``), classifies every text, and compares each path
with float32 on the same texts: label agreement and the largest and 99th
percentile absolute probability differences, plus accuracy, weighted / macro F1
and each class's F1 against the file's labels.  The JSON holds every figure; one
line goes to the results log in ``benchmarks/README.md``.

    python -m benchmarks.precision_quality --texts ../shared/data/davidson/val.csv --json out/bench/precision.json
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks import harness

PATHS = ("float32", "bfloat16", "int8")


def read_labelled(path: str, text_field: str, label_field: str) -> tuple[list[str], list[str]]:
    """Texts and raw labels of a ``.csv`` (columns) or ``.jsonl`` (fields) file."""
    with open(path, newline="", encoding="utf-8") as handle:
        if ".jsonl" in Path(path).suffixes:
            rows = [json.loads(line) for line in handle if line.strip()]
        else:
            rows = list(csv.DictReader(handle))
    return [str(r[text_field]) for r in rows], [str(r[label_field]) for r in rows]


def compare(probs: Any, reference: Any, true_ids: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """One path's figures: agreement with ``reference`` (float32) and its scores against ``true_ids``."""
    import numpy as np

    from flaxmodel import evaluate

    diff = np.abs(probs - reference).max(axis=1)
    scores = evaluate(true_ids, probs, labels)
    return {
        "label_agreement_fp32": float((probs.argmax(axis=1) == reference.argmax(axis=1)).mean()),
        "max_abs_prob_diff": float(diff.max()),
        "p99_abs_prob_diff": float(np.quantile(diff, 0.99)),
        "accuracy": scores["accuracy"],
        "weighted_f1": scores["weighted_f1"],
        "macro_f1": scores["macro_f1"],
        "f1": {name: scores["per_class"][name]["f1"] for name in labels},
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", required=True, help="Labelled .csv (columns) or .jsonl (fields).")
    parser.add_argument("--json", required=True, help="Where to write the result.")
    parser.add_argument("--model", default=None, help="Checkpoint folder; default: the default model.")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--label_field", default="label", help="Label id (0, 1, ...) or name per text.")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="", help="Free text recorded with the result.")
    args = parser.parse_args(argv)

    harness.pin_threads(args.threads)
    load_before = harness.machine()["load_avg_1m"]
    from flaxmodel import load_classifier
    from flaxmodel import parse_label

    texts, raw_labels = read_labelled(args.texts, args.text_field, args.label_field)
    probs, seconds = {}, {}
    for precision in PATHS:
        classifier = load_classifier(
            args.model, precision=precision, batch_size=args.batch_size, max_length=args.max_length
        )
        start = time.perf_counter()
        probs[precision] = classifier.predict_proba(texts)
        seconds[precision] = time.perf_counter() - start
    labels = classifier.labels
    true_ids = [parse_label(raw, labels) for raw in raw_labels]
    if None in true_ids:
        raise SystemExit(f"{args.texts}: a {args.label_field!r} value is neither an id nor one of {labels}")
    paths = {p: {**compare(probs[p], probs["float32"], true_ids, labels), "seconds_incl_compile": seconds[p]} for p in PATHS}
    result = {
        "benchmark": "precision_quality",
        "paths": paths,
        "setup": {
            "model": args.model or "(default model)",
            "weights_hash": classifier.weights_hash,
            "texts": args.texts,
            "n_texts": len(texts),
            "labels": list(labels),
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "threads": args.threads,
            **harness.provenance(load_before, args.note),
        },
    }
    harness.write_result(args.json, result)
    figures = [
        f"{p}: agree {f['label_agreement_fp32']:.2%}, max |dp| {f['max_abs_prob_diff']:.3f}, "
        f"wF1 {f['weighted_f1']:.3f}, macro F1 {f['macro_f1']:.3f}, "
        + ", ".join(f"{name} F1 {value:.3f}" for name, value in f["f1"].items())
        for p, f in paths.items()
    ]
    figures.append(f"{len(texts)} texts, weights {classifier.weights_hash}")
    harness.record_run("precision", figures, result["setup"])
    print(json.dumps(paths, indent=2))
    return result


if __name__ == "__main__":
    main()
