"""Per-class flag thresholds: parsing ``--threshold hate=0.5,offensive=0.7`` and applying them.

A row is flagged when any listed class's score reaches its threshold.  Names
are checked against the model's labels when the pipeline is built, so a typo
fails before any data is read.  With no thresholds, ``flagged`` is null: no
policy was given, which is not the same as "not flagged".
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from pipelines.options import OptionError


def parse_thresholds(spec: str, labels: Sequence[str]) -> dict[str, float]:
    """``"name=value,..."`` -> ``{name: value}``; raises :class:`OptionError` naming the bad part."""
    thresholds: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
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


def is_flagged(scores: Mapping[str, float], thresholds: Mapping[str, float]) -> bool | None:
    if not thresholds:
        return None
    return any(scores[name] >= value for name, value in thresholds.items())
