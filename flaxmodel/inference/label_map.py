"""A platform's own label names mapped onto a model's classes (``--label_map``), and scores read in them.

``'offensive=hate|offensive,not=neither'`` says that the platform's
``offensive`` allows our ``hate`` and ``offensive`` (a partial label: which of
the two is not said) and its ``not`` means our ``neither``.  Without a map the
platform's names must be the model's own, each allowing itself alone.  A
record's probability of one of their labels is the summed probability of the
classes it allows.  Its predicted label is the one allowing its top class, as
the moderation job's ``label`` column reads in their names (where several
allow it, the one with the most probability; where none does, no label of
theirs, which counts as wrong for all of them).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from flaxmodel.errors import ConfigError

LabelMap = Mapping[str, tuple[str, ...]]


def parse_label_map(spec: str | None, classes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Their label -> the model classes it allows.

    Args:
      spec: ``'theirs=ours|ours,...'``; None or empty: the identity map over ``classes``.
      classes: the model's class names.

    Returns:
      An ordered mapping of each of their labels to the classes it allows (in ``classes``' order).

    Raises:
      ConfigError: naming the entry at fault: no ``=``, an empty side, a name given twice, or a
        class the model does not have.
    """
    if not spec:
        return {c: (c,) for c in classes}
    mapping: dict[str, tuple[str, ...]] = {}
    for entry in spec.split(","):
        theirs, sep, ours = (part.strip() for part in entry.partition("="))
        allowed = [c.strip() for c in ours.split("|") if c.strip()]
        if not sep or not theirs or not allowed:
            raise ConfigError(f"--label_map entry {entry.strip()!r}: write theirs=ours or theirs=ours|ours, e.g. not=neither")
        if theirs in mapping:
            raise ConfigError(f"--label_map names {theirs!r} twice")
        unknown = [c for c in allowed if c not in classes]
        if unknown:
            raise ConfigError(f"--label_map {theirs}={ours}: the model has no class {unknown[0]!r}; its classes: {', '.join(classes)}")
        mapping[theirs] = tuple(c for c in classes if c in allowed)
    return mapping


def allowed_mask(label_map: LabelMap, classes: Sequence[str]) -> np.ndarray:
    """float32 ``[len(label_map), len(classes)]``: row i is 1 on the classes their i-th label allows."""
    index = {c: i for i, c in enumerate(classes)}
    mask = np.zeros((len(label_map), len(classes)), np.float32)
    for row, allowed in enumerate(label_map.values()):
        mask[row, [index[c] for c in allowed]] = 1.0
    return mask


def mapped_probabilities(probabilities: np.ndarray, label_map: LabelMap, classes: Sequence[str]) -> np.ndarray:
    """``[rows, len(label_map)]``: each of their labels' probability, the sum over the classes it allows.

    Args:
      probabilities: float ``[rows, len(classes)]`` class probabilities.
      label_map: from :func:`parse_label_map`.
      classes: the model's classes, in the columns' order.
    """
    return np.asarray(probabilities, np.float64) @ allowed_mask(label_map, classes).T.astype(np.float64)


def mapped_predictions(probabilities: np.ndarray, label_map: LabelMap, classes: Sequence[str]) -> np.ndarray:
    """int ``[rows]``: the index of their label allowing each row's top class (-1 where none does).

    Args:
      probabilities: float ``[rows, len(classes)]`` class probabilities.
      label_map: from :func:`parse_label_map`.
      classes: the model's classes, in the columns' order.
    """
    probabilities = np.asarray(probabilities, np.float64)
    allows = allowed_mask(label_map, classes).T > 0  # [classes, labels]
    mapped = mapped_probabilities(probabilities, label_map, classes)
    top = probabilities.argmax(axis=1)
    candidates = np.where(allows[top], mapped, -np.inf)
    return np.where(allows[top].any(axis=1), candidates.argmax(axis=1), -1)


def mapped_benign(label_map: LabelMap, benign: str) -> str | None:
    """Their label that stands for the model's benign class: the one label allowing it, else None."""
    holders = [theirs for theirs, allowed in label_map.items() if benign in allowed]
    return holders[0] if len(holders) == 1 else None
