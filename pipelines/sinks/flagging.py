"""Per-class flag thresholds: the model's recommended ones, ``--threshold hate=0.5,offensive=0.7``, applying them.

A row is flagged when any listed class's score reaches its threshold.  By
default the thresholds are those the model folder recommends
(``thresholds.json``, chosen on validation data for a stated precision, and
read into the :class:`flaxmodel.ModelRef` at launch); ``--threshold`` replaces them, and
``--threshold none`` turns flagging off.  Names are checked against the
model's labels when the pipeline is built, so a typo fails before any data is
read.  With no thresholds, ``flagged`` is null: no policy was given, which is
not the same as "not flagged".
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from flaxmodel import ModelRef, OptionError

# --threshold value that turns flagging off, even for a model that recommends thresholds.
NO_THRESHOLDS = "none"


def resolve_thresholds(flag_value: str, model: ModelRef) -> dict[str, float]:
    """The thresholds a run applies: ``--threshold``'s, none, or the model folder's recommended ones.

    Args:
      flag_value: the ``--threshold`` value: ``""`` (the model's), ``"none"``, or ``name=value`` pairs.
      model: the model, whose labels the names must be and whose recommended thresholds are the default.

    Returns:
      Class name -> threshold; empty: ``flagged`` stays null.

    Raises:
      OptionError: for a malformed value, or recommended thresholds naming classes the model lacks.
    """
    labels = model.labels
    if flag_value.strip().lower() == NO_THRESHOLDS:
        return {}
    if flag_value.strip():
        return parse_thresholds(flag_value, labels)
    recommended = dict(model.thresholds)
    unknown = sorted(set(recommended) - set(labels))
    if unknown:
        raise OptionError(
            f"the model's thresholds.json names {unknown}, not labels of the model ({', '.join(labels)}); "
            "fix the file or pass --threshold"
        )
    return recommended


def parse_thresholds(flag_value: str, labels: Sequence[str]) -> dict[str, float]:
    """``"name=value,..."`` -> ``{name: value}``; raises :class:`OptionError` naming the bad part."""
    thresholds: dict[str, float] = {}
    for part in (p.strip() for p in flag_value.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise OptionError(f"--threshold: {part!r} is not name=value (e.g. hate=0.5)")
        if name not in labels:
            raise OptionError(f"--threshold: {name!r} is not a label of the model; labels: {', '.join(labels)}")
        if name in thresholds:
            raise OptionError(f"--threshold: {name!r} is given twice")
        try:
            number = float(value)
        except ValueError:
            raise OptionError(f"--threshold: {value.strip()!r} for {name!r} is not a number") from None
        if math.isnan(number) or not 0.0 <= number <= 1.0:
            raise OptionError(f"--threshold: {name}={value.strip()} must be a probability in [0, 1]")
        thresholds[name] = number
    return thresholds


def flagged_column(scores: np.ndarray, labels: Sequence[str], thresholds: Mapping[str, float]) -> pa.Array:
    """The ``flagged`` column: whether any class reached its threshold; all null when none is set.

    Args:
      scores: float32 ``[n, labels]``.
      labels: the model's labels, naming the columns of ``scores``.
      thresholds: ``{label: threshold}`` (:func:`resolve_thresholds`).

    Returns:
      A bool array of ``n`` values.
    """
    if not thresholds:
        return pa.nulls(len(scores), pa.bool_())
    flagged = np.zeros(len(scores), bool)
    for name, value in thresholds.items():
        # Compared in float64, as Python floats compare the float32 scores.
        flagged |= scores[:, labels.index(name)].astype(np.float64) >= value
    return pa.array(flagged)
