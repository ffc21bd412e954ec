"""Choosing a model's recommended flag thresholds on validation data, and writing them into its folder.

``python -m flaxmodel.training.thresholds --model FOLDER --mixture FILE --data_root DIR --precision 0.8``

For each flagged class, the lowest probability threshold whose flags reach the
target precision on the pooled validation rows of the mixture's sources of
posts, the functional suite left out (the threshold with the most recall among
those that do).  Partial labels count
only where they decide the question: for ``hate``, a row labeled "hate" is a
positive and a row whose label rules hate out ("neither", "offensive or
neither") a negative; a row labeled "hate or offensive" says nothing and is
left out.  The result goes to the folder's ``thresholds.json``
(:mod:`flaxmodel.ckpts.thresholds`), which the moderation job applies by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Sequence

import numpy as np

from flaxmodel.ckpts.thresholds import write_thresholds
from flaxmodel.commands import run_command
from flaxmodel.errors import ConfigError
from flaxmodel.flags import add_flags, flag, from_namespace
from flaxmodel.inference.metrics import threshold_for_precision
from flaxmodel.inference.predictor import load_classifier
from flaxmodel.training.mixture import Mixture, SourceSet, load_mixture, read_mixture

PROG = "flaxmodel.training.thresholds"


@dataclasses.dataclass(frozen=True)
class ThresholdSettings:
    """The thresholds command's flags."""

    model: str = flag(help="Model folder to score and write thresholds.json into.")
    mixture: str = flag(help="Mixture file whose validation splits choose the thresholds.")
    data_root: str = flag(help="Folder the mixture's paths are relative to.")
    precision: float = flag(0.8, "Target precision of each class's flags.")
    # Only hate by default: `flagged` then means "likely hate at the stated precision", the question the
    # model card answers; a platform that also acts on offensive language adds its own offensive threshold.
    classes: tuple[str, ...] = flag(("hate",), "Comma-separated classes that get a threshold.")
    max_length: int = flag(128, "Tokens per text, as the pipeline's windows.")
    sources: tuple[str, ...] | None = flag(
        None, "Comma-separated sources whose validation rows are pooled; default: all but the functional suite."
    )


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


def threshold_sources(mixture: Mixture, names: Sequence[str] | None = None) -> Mixture:
    """``mixture`` with only the sources whose validation rows choose the thresholds.

    By default every source of posts: the functional suite is left out because its
    share of the pool is set by how many templates we wrote, 14 near-identical cases
    each, not by how often such posts occur (the default model's card shows how far
    new templates moved a threshold chosen with the suite in the pool).

    Args:
      mixture: the mixture whose sources are chosen from.
      names: source names, or None for every source that is not the functional suite.

    Returns:
      The mixture with the chosen sources, in its own order.

    Raises:
      ConfigError: a name that is not a source of the mixture, or no source left.
    """
    known = [s.name for s in mixture.sources]
    if names is None:
        chosen = tuple(s for s in mixture.sources if s.reader != "functional")
    else:
        wanted = [n.strip() for n in names if n.strip()]
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise ConfigError(f"--sources: {unknown} not in the mixture; its sources: {known}")
        chosen = tuple(s for s in mixture.sources if s.name in wanted)
    if not chosen:
        raise ConfigError(f"--sources: no source left to choose thresholds on; the mixture's sources: {known}")
    return dataclasses.replace(mixture, sources=chosen)


def _pooled(classifier, sets: Sequence[SourceSet]) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.concatenate([classifier.predict_proba(s.texts) for s in sets])
    allowed = np.concatenate([s.allowed[s.label_ids] for s in sets])
    return probabilities, allowed


def _check(settings: ThresholdSettings) -> None:
    if not 0 < settings.precision <= 1:
        raise ConfigError(f"--precision must be in (0, 1], got {settings.precision}")
    if settings.max_length < 3:
        raise ConfigError(f"--max_length must leave room for special tokens and text, got {settings.max_length}")
    if not settings.classes:
        raise ConfigError("--classes: name at least one class to choose a threshold for")


def _choose(settings: ThresholdSettings) -> None:
    _check(settings)
    mixture = threshold_sources(load_mixture(settings.mixture), settings.sources)
    classifier = load_classifier(settings.model, max_length=settings.max_length, precision="float32")
    unknown = [c for c in settings.classes if c not in classifier.labels]
    if unknown:
        raise ConfigError(f"--classes {unknown}: {settings.model} predicts {list(classifier.labels)}")
    _, val_sets = read_mixture(mixture, settings.data_root)
    probabilities, allowed = _pooled(classifier, val_sets)
    chosen = choose_thresholds(probabilities, allowed, classifier.labels, settings.classes, settings.precision)
    thresholds = {name: c["threshold"] for name, c in chosen.items() if c["threshold"] is not None}
    how = {
        "target_precision": settings.precision,
        "per_class": chosen,
        "chosen_on": f"validation splits of {', '.join(s.name for s in val_sets)} ({settings.mixture}), pooled",
    }
    write_thresholds(settings.model, thresholds, how)
    print(json.dumps({"thresholds": thresholds, **how}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Parses ``argv`` (default: ``sys.argv[1:]``), chooses the thresholds, writes ``thresholds.json`` and prints it.

    Args:
      argv: the command line's arguments.

    Returns:
      The exit status: 0, or 2 after ``PROG: error: MESSAGE`` on stderr for a flag, mixture or model
      folder that cannot work (checked before the validation data is read).
    """
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_flags(parser, ThresholdSettings)
    settings = from_namespace(ThresholdSettings, parser.parse_args(argv))
    return run_command(PROG, lambda: _choose(settings))


if __name__ == "__main__":
    sys.exit(main())
