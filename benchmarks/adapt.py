"""What ``moderate-adapt`` costs and buys: its wall time, and validation scores before and after.

Runs the command as a user would (its own process, compile included), then
scores the starting and the adapted model on every validation set of a
mixture (per source, each as training's selection scores it: macro F1 over the
source's label sets, else the share its labels allow) and on their mean over
the default mixture's sources.  The functional suite's cases are also split
into their hateful and non-hateful halves, where forgetting shows first.  A
model with a target-group head also gets ``target_groups``: the mean over the
groups of its F1 at the folder's own thresholds, on the target-annotated
validation rows of the mixture's sources (of our functional suite alone when
the mixture lacks them).

    python -m benchmarks.adapt --train off_train1000.csv --label_map 'offensive=hate|offensive,not=neither' \\
        --data_root ../shared/data --mixture research --json out/bench/adapt.json
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

import numpy as np

from benchmarks import harness
from flaxmodel import load_classifier
from flaxmodel.errors import DataError
from flaxmodel.inference.metrics import evaluate, set_label_scores
from flaxmodel.inference.reference import resolve_model
from flaxmodel.training.mixture import load_mixture, read_mixture
from flaxmodel.training.mixture_file import DEFAULT_MIXTURE
from flaxmodel.training.target_data import TargetSet, functional_targets, read_target_sets

MIXTURES = {"default": DEFAULT_MIXTURE, "research": os.path.join(os.path.dirname(DEFAULT_MIXTURE), "research.toml")}


def run_adapt(args: argparse.Namespace, output: str) -> float:
    """Runs ``moderate-adapt`` in its own process; returns its wall seconds."""
    command = [sys.executable, "-m", "pipelines.adapt", "--model", args.model, "--output", output, "--quiet"]
    command += ["--reviewed" if args.reviewed else "--train", args.reviewed or args.train]
    if args.label_map:
        command += ["--label_map", args.label_map]
    command += shlex.split(args.adapt_args)
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"moderate-adapt failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(done.stdout)
    return seconds


def target_sets(mixture: str, data_root: str) -> list[TargetSet]:
    """The target-annotated validation rows: the mixture's, else our functional suite's."""
    try:
        return read_target_sets(load_mixture(mixture), data_root)[1]
    except DataError:
        return [functional_targets()]


def target_f1(folder: str, classifier, sets: Sequence[TargetSet], limit: int | None) -> float:
    """Mean over the target groups with an annotated attack of F1 at the folder's own thresholds."""
    thresholds = dict(resolve_model(folder).target_thresholds)
    named, attacked, known = [], [], []
    for s in sets:
        n = len(s) if limit is None else min(limit, len(s))
        scores = classifier.predict_targets(s.texts[:n])
        named.append(scores >= np.asarray([thresholds[c] for c in classifier.targets]))
        attacked.append(s.labels[:n] > 0.5)
        known.append(s.known[:n])
    named, attacked, known = (np.concatenate(a) for a in (named, attacked, known))
    f1 = []
    for j in range(named.shape[1]):
        rows = known[:, j]
        if attacked[rows, j].any():
            hits = (named[rows, j] & attacked[rows, j]).sum()
            f1.append(2 * hits / (named[rows, j].sum() + attacked[rows, j].sum()))
    return float(np.mean(f1))


def scores(folder: str, val_sets, limit: int | None, targets: Sequence[TargetSet] = ()) -> dict[str, float]:
    """Each validation set's selection score (and the functional suite's halves) for a model folder, and its
    target groups' mean F1 (:func:`target_f1`) if it has a target head."""
    classifier = load_classifier(folder, precision="float32")
    out = {}
    if classifier.targets and targets:
        out["target_groups"] = target_f1(folder, classifier, targets, limit)
    for val in val_sets:
        n = len(val) if limit is None else min(limit, len(val))
        probabilities = classifier.predict_proba(val.texts[:n])
        ids = val.label_ids[:n]
        if val.label_names == classifier.labels and (val.allowed == np.eye(len(val.label_names), dtype=bool)).all():
            out[val.name] = evaluate(ids, probabilities, classifier.labels)["macro_f1"]
        else:
            out[val.name] = set_label_scores(probabilities, val.allowed[ids], classifier.labels)["score"]
        if val.groups is not None:
            correct = val.allowed[ids][np.arange(n), probabilities.argmax(axis=1)]
            hateful = val.allowed[ids][:, list(classifier.labels).index("hate")] & ~val.allowed[ids].all(axis=1)
            for half, rows in (("hateful", hateful), ("non_hateful", ~hateful)):
                if rows.any():
                    out[f"{val.name}.{half}"] = float(correct[rows].mean())
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", help="Labeled rows for moderate-adapt --train.")
    parser.add_argument("--reviewed", help="A reviewed review sample for moderate-adapt --reviewed.")
    parser.add_argument("--label_map", default="")
    parser.add_argument("--model", default="default")
    parser.add_argument("--adapt_args", default="", help="More moderate-adapt flags, quoted.")
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--mixture", default="default", help="Mixture whose validation sets score both models (default, research or a file).")
    parser.add_argument("--limit", type=int, default=None, help="Most rows scored per validation set.")
    parser.add_argument("--output", default=None, help="Where the adapted folder goes (default: a temporary folder, removed).")
    parser.add_argument("--json", required=True)
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    if (args.train is None) == (args.reviewed is None):
        parser.error("give --train or --reviewed")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        output = args.output or os.path.join(scratch, "adapted")
        seconds = run_adapt(args, output)
        mixture = MIXTURES.get(args.mixture, args.mixture)
        _, val_sets = read_mixture(load_mixture(mixture), args.data_root)
        targets = target_sets(mixture, args.data_root)
        before = scores(args.model, val_sets, args.limit, targets)
        after = scores(output, val_sets, args.limit, targets)
    # The mean over the default mixture's sources (over every set when none of them was scored).
    default_names = [s.name for s in load_mixture(DEFAULT_MIXTURE).sources if s.name in before] or [n for n in before if "." not in n and n != "target_groups"]
    result = {
        "setup": {"model": args.model, "train": args.train, "reviewed": args.reviewed, "label_map": args.label_map,
                  "adapt_args": args.adapt_args, "mixture": args.mixture, "limit": args.limit,
                  **harness.provenance(load_before, args.note)},  # fmt: skip
        "adapt_seconds": round(seconds, 1),
        "before": before,
        "after": after,
        "default_mixture_mean": {
            "before": float(np.mean([before[n] for n in default_names])),
            "after": float(np.mean([after[n] for n in default_names])),
            "sources": default_names,
        },
    }
    harness.write_result(args.json, result)
    width = max(len(k) for k in before)
    print(f"moderate-adapt: {seconds:.0f} s wall")
    for name in before:
        print(f"  {name:<{width}}  {100 * before[name]:6.1f} -> {100 * after[name]:6.1f}")
    mean = result["default_mixture_mean"]
    print(f"  {'default mixture mean':<{width}}  {100 * mean['before']:6.1f} -> {100 * mean['after']:6.1f}")
    figures = [f"adapt {seconds:.0f} s", f"default-mixture mean {100 * mean['before']:.1f} -> {100 * mean['after']:.1f}"]
    figures += [f"{n} {100 * before[n]:.1f} -> {100 * after[n]:.1f}" for n in before if n.startswith(("tweeteval", "dynahate", "functional", "target"))]
    harness.record_run("adapt", figures, result["setup"])
    return result


if __name__ == "__main__":
    main()
