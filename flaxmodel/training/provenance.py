"""What a trained model folder was trained on, and whether it may teach a default model (``training_data.json``).

The default model, and anything distilled into it, trains only on data whose
licence allows a redistributed, commercially usable model.  A mixture says so
with ``use = "default"`` (:mod:`flaxmodel.training.mixture_file` checks every
trained source's licence); each exported model folder records that use and its
sources, so that a later run can tell whether a folder may be its teacher, and
the model card can say what the model may be used for.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from flaxmodel.ckpts import files
from flaxmodel.ckpts.training_data import TRAINING_DATA_FILE, UNDECLARED, read_use
from flaxmodel.errors import ConfigError
from flaxmodel.inference.predictor import Classifier
from flaxmodel.training.mixture_file import Mixture


def mixture_record(mixture: Mixture) -> dict[str, Any]:
    """What ``training_data.json`` says of a model trained on ``mixture``."""
    return {
        "use": mixture.use,
        "sources": [{"name": s.name, "licence": s.licence, "trained": not s.evaluate_only} for s in mixture.sources],
    }


def files_record(train: str) -> dict[str, Any]:
    """What ``training_data.json`` says of a model trained on ``--train`` files (licences undeclared)."""
    return {"use": UNDECLARED, "sources": [{"name": train, "licence": UNDECLARED, "trained": True}]}


def teachers_record(folders: Sequence[str], teachers: Sequence[Classifier], distill_weight: float) -> list[dict[str, Any]]:
    """What ``training_data.json`` says of a distilled model's teachers: who they are and what they may teach.

    Args:
      folders: the ``--teachers`` folders, in the order ``teachers`` were loaded from them.
      teachers: the loaded teachers (their identities name the weights, not just the folder).
      distill_weight: the run's share of the loss that was cross-entropy with their mean probabilities.
    """
    return [
        {"model": t.identity, "folder": folder, "use": read_use(folder), "distill_weight": float(distill_weight)}
        for folder, t in zip(folders, teachers)
    ]


def write_record(folder: str, record: dict[str, Any]) -> None:
    files.write_bytes(files.join(folder, TRAINING_DATA_FILE), (json.dumps(record, indent=2) + "\n").encode())


def read_record(folder: str) -> dict[str, Any]:
    """A model folder's whole ``training_data.json``; {} without one."""
    path = files.join(folder, TRAINING_DATA_FILE)
    if not files.exists(path):
        return {}
    try:
        record = json.loads(files.read_bytes(path))
    except ValueError as err:
        raise ConfigError(f"{path}: not JSON ({err})") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path}: expected {{'use': ..., 'sources': [...]}}")
    return record


def _read_list(folder: str, key: str) -> list[dict[str, Any]]:
    """The list under ``key`` in a model folder's ``training_data.json``; [] without the file or the key."""
    path = files.join(folder, TRAINING_DATA_FILE)
    if not files.exists(path):
        return []
    try:
        return list(json.loads(files.read_bytes(path)).get(key, []))
    except (ValueError, TypeError, AttributeError) as err:
        raise ConfigError(f"{path}: expected {{'use': ..., 'sources': [...]}} ({err})") from None


def read_sources(folder: str) -> list[dict[str, Any]]:
    """The sources a model folder's ``training_data.json`` lists (a soup's: its ingredients'); [] without them."""
    return _read_list(folder, "sources")


def soup_record(folders: Sequence[str], weights: Sequence[float]) -> dict[str, Any]:
    """What ``training_data.json`` says of a soup: its ingredients and weights, and every source any trained on.

    A soup may do what every one of its runs may: a default model only if all were trained for one.  Its
    teachers are every ingredient's, each listed once.
    """
    uses = {read_use(folder) for folder in folders}
    sources: dict[str, dict[str, Any]] = {}
    teachers: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for source in read_sources(folder):
            known = sources.setdefault(source["name"], dict(source))
            known["trained"] = bool(known.get("trained")) or bool(source.get("trained"))
        for teacher in _read_list(folder, "teachers"):
            teachers.setdefault(teacher["model"], teacher)
    record = {
        "use": uses.pop() if len(uses) == 1 else UNDECLARED,
        "soup_of": [{"folder": f, "weight": float(w)} for f, w in zip(folders, weights)],
        "sources": list(sources.values()),
    }
    return {**record, "teachers": list(teachers.values())} if teachers else record


def check_teachers(use: str, teachers: Sequence[str]) -> None:
    """Refuses, for a default-model run, any teacher not itself trained for the default model's use.

    Raises:
      ConfigError: naming the teachers and what their folders declare.
    """
    if use != "default":
        return
    tainted = [f"{folder} ({read_use(folder)})" for folder in teachers if read_use(folder) != "default"]
    if tainted:
        raise ConfigError(
            f"--teachers {', '.join(tainted)}: a default model learns only from teachers trained on permissive "
            f"data (their {TRAINING_DATA_FILE} says use 'default'); retrain them on a default mixture or train a "
            "research model (use = 'research')"
        )
