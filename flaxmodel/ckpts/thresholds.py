"""Recommended flag thresholds that travel with a model folder (``thresholds.json``).

Chosen on validation data when the model is trained (see
:mod:`flaxmodel.training.thresholds`), so the moderation job can fill its
``flagged`` column without the user picking numbers; ``--threshold`` overrides
them.  The file also records how they were chosen (target precision, the
precision and recall each reached, on which data), for the model card and for
anyone auditing a flag.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from flaxmodel.ckpts import files
from flaxmodel.ckpts.default_model import model_folder
from flaxmodel.errors import CheckpointError

THRESHOLDS_FILE = "thresholds.json"


def recommended_thresholds(folder: str | None = None) -> dict[str, float]:
    """The per-class thresholds a model folder recommends.

    Args:
      folder: a model folder (local or on a Beam filesystem) or a bundled model's name; default: the
        default model.

    Returns:
      Class name -> probability threshold; empty when the folder has no ``thresholds.json``.

    Raises:
      CheckpointError: for a ``thresholds.json`` that is not a mapping of names to probabilities.
    """
    folder = model_folder(None if folder is None else str(folder))
    path = files.join(folder, THRESHOLDS_FILE)
    if not files.exists(path):
        return {}
    try:
        table = json.loads(files.read_bytes(path)).get("thresholds")
        thresholds = {str(name): float(value) for name, value in table.items()}
    except (ValueError, AttributeError, TypeError) as err:
        raise CheckpointError(f"{path}: expected {{'thresholds': {{class: probability}}}} ({err})") from None
    bad = [name for name, value in thresholds.items() if math.isnan(value) or not 0.0 <= value <= 1.0]
    if bad:
        raise CheckpointError(f"{path}: thresholds of {bad} are not probabilities in [0, 1]")
    return thresholds


def write_thresholds(folder: str, thresholds: Mapping[str, float], how: Mapping[str, Any]) -> str:
    """Writes ``thresholds.json`` into a model folder (local or on a Beam filesystem).

    Args:
      folder: the model folder.
      thresholds: class name -> probability threshold.
      how: how they were chosen (target precision, per-class precision and recall, data), stored beside them.

    Returns:
      The file's path.
    """
    path = files.join(folder, THRESHOLDS_FILE)
    files.write_bytes(path, (json.dumps({"thresholds": dict(thresholds), **how}, indent=2) + "\n").encode())
    return path
