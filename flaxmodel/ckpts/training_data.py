"""What a model folder's ``training_data.json`` says its training data allows (``use``).

A model trained on data whose licences forbid commercial use declares ``use: "research"``. Training reads
it so that such a folder never teaches a default model, and the jobs read it so that running one says so.
"""

from __future__ import annotations

import json

from flaxmodel.ckpts import files
from flaxmodel.errors import ConfigError

__all__ = ["RESEARCH", "TRAINING_DATA_FILE", "UNDECLARED", "read_use"]

TRAINING_DATA_FILE = "training_data.json"
# Data given as --train files, or a folder from elsewhere: no file declares the licences.
UNDECLARED = "undeclared"
# A separately named model whose training data allows research use only.
RESEARCH = "research"


def read_use(folder: str) -> str:
    """The ``use`` a model folder's training data allows.

    Args:
      folder: a model folder, local or on a Beam filesystem.

    Returns:
      ``"default"``, ``"research"``, or :data:`UNDECLARED` without the file.

    Raises:
      ConfigError: for a file that is not ``{"use": ..., "sources": [...]}``.
    """
    path = files.join(folder, TRAINING_DATA_FILE)
    if not files.exists(path):
        return UNDECLARED
    try:
        return str(json.loads(files.read_bytes(path))["use"])
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: expected {{'use': ..., 'sources': [...]}} ({err})") from None
