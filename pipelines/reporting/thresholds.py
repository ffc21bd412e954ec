"""The flag thresholds the report draws each score's tail above: given, or found to reproduce the run's flags.

A run's labels carry each record's ``flagged``, not the thresholds behind it.
``moderate-report --threshold`` names them as ``moderate --threshold`` did.
Without it the report tries the thresholds that the model named in the
``model`` column recommends (its ``thresholds.json``: a bundled model such as
``default``, or a model folder of that name in the working directory), and
uses them only if they flag exactly the records the run flagged, so a run
given other thresholds is never drawn against the model's.  Otherwise the
thresholds are unknown and the page says how to give them.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from flaxmodel import ModerationError, recommended_thresholds
from pipelines.reporting.data import RunData
from pipelines.sinks import NO_THRESHOLDS, flagged_column, parse_thresholds


def _flags(run: RunData) -> np.ndarray | None:
    """The run's ``flagged`` column as bools; None when the run set no thresholds (all null)."""
    column = run.rows.column("flagged")
    if run.rows.num_rows == 0 or column.null_count == run.rows.num_rows:
        return None
    return column.fill_null(False).to_numpy(zero_copy_only=False)


def differing_flags(run: RunData, thresholds: Mapping[str, float]) -> int:
    """Records whose ``flagged`` these thresholds would set otherwise than the run did."""
    flags = _flags(run)
    if flags is None:
        return 0 if not thresholds else run.rows.num_rows
    scores = np.stack([run.rows.column(c).to_numpy().astype(np.float32) for c in run.labels], axis=1)
    ours = flagged_column(scores, run.labels, thresholds).fill_null(False).to_numpy(zero_copy_only=False)
    return int(np.sum(ours != flags))


def _recommended(run: RunData) -> tuple[str, dict[str, float]] | None:
    """The first model in the ``model`` column whose recommended thresholds reproduce the run's flags."""
    for identity in dict.fromkeys(run.rows.column("model").to_pylist()):
        name = str(identity).split("@")[0]
        try:
            candidate = recommended_thresholds(name)
        except ModerationError:  # a thresholds.json that is not one: not this run's either
            continue
        if candidate and set(candidate) <= set(run.labels) and differing_flags(run, candidate) == 0:
            return name, candidate
    return None


def run_thresholds(run: RunData, given: str | None) -> dict[str, Any]:
    """The thresholds to draw the tails above, and where they come from (JSON-ready).

    Args:
      run: the run, whose labels the names must be.
      given: ``--threshold`` (``name=value,...`` or ``none``), or None to find the run's own.

    Returns:
      ``thresholds`` (class -> value, empty when none or unknown), ``source`` (where they come from, a phrase
      for the page) and ``differing`` (records whose flag they would set otherwise than the run did; None when
      the thresholds are unknown).

    Raises:
      OptionError: for a malformed ``given`` or a name that is not a label of the run.
    """
    if given is not None:
        thresholds = {} if given.strip().lower() == NO_THRESHOLDS else parse_thresholds(given, run.labels)
        source = "as given by --threshold"
        return {"thresholds": thresholds, "source": source, "differing": differing_flags(run, thresholds)}
    if _flags(run) is None:
        return {"thresholds": {}, "source": "the run set none and flagged nothing", "differing": 0}
    found = _recommended(run)
    if found is None:
        source = (
            "since the model the run names recommends none that reproduce its flags; give them as "
            "moderate-report --threshold NAME=VALUE,... as given to moderate"
        )
        return {"thresholds": {}, "source": source, "differing": None}
    name, thresholds = found
    source = f"recommended by the model {name} in its thresholds.json, which reproduce every flag of the run"
    return {"thresholds": thresholds, "source": source, "differing": 0}
