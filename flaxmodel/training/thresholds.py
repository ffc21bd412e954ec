"""Choosing a model's recommended flag thresholds on validation data, and writing them into its folder.

``python -m flaxmodel.training.thresholds --model FOLDER --mixture FILE --data_root DIR --precision 0.8``

For each flagged class, the lowest probability threshold whose flags reach the
target precision on the pooled validation rows of the mixture's sources (the
threshold with the most recall among those that do).  Partial labels count
only where they decide the question: for ``hate``, a row labeled "hate" is a
positive and a row whose label rules hate out ("neither", "offensive or
neither") a negative; a row labeled "hate or offensive" says nothing and is
left out.  The result goes to the folder's ``thresholds.json``
(:mod:`flaxmodel.ckpts.thresholds`), which the moderation job applies by default.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

import numpy as np

from flaxmodel.ckpts.thresholds import write_thresholds
from flaxmodel.inference.metrics import threshold_for_precision
from flaxmodel.inference.predictor import load_classifier
from flaxmodel.training.mixture import SourceSet, load_mixture, read_mixture


def choose_thresholds(
    probabilities: np.ndarray, allowed: np.ndarray, classes: Sequence[str], flagged: Sequence[str], precision: float
) -> dict[str, dict[str, Any]]:
    """Per flagged class, the threshold reaching ``precision`` (see the module docstring).

    Args:
      probabilities: float ``[n, num_classes]``.
      allowed: bool ``[n, num_classes]`` the classes each row's label allows.
      classes: class names in column order.
      flagged: the classes to choose thresholds for.
      precision: the target precision, in (0, 1].

    Returns:
      Class -> ``{threshold, precision, recall, flagged, positives, negatives}``;
      ``threshold`` is None when no threshold reaches the target.
    """
    allowed = np.asarray(allowed, dtype=bool)
    out = {}
    for name in flagged:
        c = list(classes).index(name)
        positive = allowed[:, c] & (allowed.sum(axis=1) == 1)
        decided = positive | ~allowed[:, c]
        found = threshold_for_precision(positive[decided], probabilities[decided, c], precision)
        out[name] = {**found, "positives": int(positive.sum()), "negatives": int((decided & ~positive).sum())}
    return out


def _pooled(classifier, sets: Sequence[SourceSet]) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.concatenate([classifier.predict_proba(s.texts) for s in sets])
    allowed = np.concatenate([s.allowed[s.label_ids] for s in sets])
    return probabilities, allowed


def main(argv: Sequence[str] | None = None) -> None:
    """Parses ``argv``, chooses the thresholds, writes ``thresholds.json`` and prints it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Model folder to score and write thresholds.json into.")
    parser.add_argument("--mixture", required=True, help="Mixture file whose validation splits choose the thresholds.")
    parser.add_argument("--data_root", required=True, help="Folder the mixture's paths are relative to.")
    parser.add_argument("--precision", type=float, default=0.8, help="Target precision of each class's flags.")
    # Only hate by default: `flagged` then means "likely hate at the stated precision", the question the
    # model card answers; a platform that also acts on offensive language adds its own offensive threshold.
    parser.add_argument("--classes", default="hate", help="Classes that get a threshold.")
    parser.add_argument("--max_length", type=int, default=128, help="Tokens per text, as the pipeline's windows.")
    args = parser.parse_args(argv)
    mixture = load_mixture(args.mixture)
    _, val_sets = read_mixture(mixture, args.data_root)
    classifier = load_classifier(args.model, max_length=args.max_length, precision="float32")
    flagged = [c.strip() for c in args.classes.split(",") if c.strip()]
    chosen = choose_thresholds(*_pooled(classifier, val_sets), classifier.labels, flagged, args.precision)
    thresholds = {name: c["threshold"] for name, c in chosen.items() if c["threshold"] is not None}
    how = {
        "target_precision": args.precision,
        "per_class": chosen,
        "chosen_on": f"validation splits of {', '.join(s.name for s in val_sets)} ({args.mixture}), pooled",
    }
    write_thresholds(args.model, thresholds, how)
    print(json.dumps({"thresholds": thresholds, **how}, indent=2))


if __name__ == "__main__":
    main()
