"""A mixture file: the TOML that declares a data mixture, read and checked into a :class:`Mixture`.

The file (the default model's is ``mixtures/default.toml``, whose header
documents the keys) names the classes, the seed of the seeded splits and, per
source, its reader, where its rows are, how its splits are made, its sampling
weight and which of our classes each of its labels allows.  A file may
``extends`` another, relative to it, and override its keys source by source.
Reading the rows a mixture names is :mod:`flaxmodel.training.mixture`'s job.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from typing import Any, Mapping

from flaxmodel.errors import ConfigError

READERS = ("table", "tweeteval", "convabuse", "functional")
# Licences under which data may train a redistributed, commercially usable model ("project": our own
# functional suite), and those that allow selection, evaluation and a separately named research model only.
PERMISSIVE_LICENCES = ("MIT", "Apache-2.0", "CC0-1.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "project")
RESEARCH_LICENCES = ("CC-BY-NC-4.0", "research-only", "none-stated")
# What a mixture trains: "default" (the shipped, commercially usable model: permissive sources only) or
# "research" (a separately named model whose card says it is not for commercial use).
USES = ("default", "research")
DEFAULT_MIXTURE = os.path.join(os.path.dirname(__file__), "mixtures", "default.toml")
_SOURCE_KEYS = {
    "reader", "train", "val", "text_field", "label_field", "split_field", "train_split", "val_split",
    "val_fraction", "weight", "labels", "licence", "evaluate_only", "val_unseen",
}


@dataclasses.dataclass(frozen=True)
class Source:
    """One source of a mixture (the keys of a ``[sources.<name>]`` table)."""

    name: str
    reader: str
    train: str
    licence: str
    val: str | None = None
    text_field: str = "text"
    label_field: str = "label"
    split_field: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    val_fraction: float = 0.0
    weight: float = 1.0
    labels: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    # Scored on its validation rows for choosing the best epoch, never trained on.
    evaluate_only: bool = False
    # Validation keeps only rows with no near-duplicate among this source's training rows.
    val_unseen: bool = False


@dataclasses.dataclass(frozen=True)
class Mixture:
    """The classes, the seed of the seeded splits, the sources, and what the mixture may train (``use``)."""

    classes: tuple[str, ...]
    seed: int
    sources: tuple[Source, ...]
    use: str = "default"


def _source(name: str, table: Mapping[str, Any], classes: tuple[str, ...]) -> Source:
    unknown = sorted(set(table) - _SOURCE_KEYS)
    if unknown:
        raise ConfigError(f"mixture source {name!r}: unknown keys {unknown}; known: {sorted(_SOURCE_KEYS)}")
    if table.get("reader") not in READERS:
        raise ConfigError(f"mixture source {name!r}: reader must be one of {READERS}, got {table.get('reader')!r}")
    if "train" not in table:
        raise ConfigError(f"mixture source {name!r}: no 'train' file")
    known = (*PERMISSIVE_LICENCES, *RESEARCH_LICENCES)
    if table.get("licence") not in known:
        raise ConfigError(f"mixture source {name!r}: licence must be one of {list(known)}, got {table.get('licence')!r}")
    labels = {str(k): tuple(v) for k, v in table.get("labels", {}).items()}
    for label, allowed in labels.items():
        bad = [c for c in allowed if c not in classes]
        if bad:
            raise ConfigError(f"mixture source {name!r}: label {label!r} maps to {bad}, not among classes {list(classes)}")
    if table["reader"] != "functional" and not labels:
        raise ConfigError(f"mixture source {name!r}: no [sources.{name}.labels] mapping onto {list(classes)}")
    source = Source(name=name, **{k: v for k, v in table.items() if k != "labels"}, labels=labels)
    if not source.weight > 0:
        raise ConfigError(f"mixture source {name!r}: weight must be positive, got {source.weight}")
    if sum((source.val is not None, source.split_field is not None, source.val_fraction > 0)) > 1:
        raise ConfigError(f"mixture source {name!r}: give one of val, split_field or val_fraction")
    if not 0 <= source.val_fraction < 1:
        raise ConfigError(f"mixture source {name!r}: val_fraction must be in [0, 1)")
    if source.evaluate_only and source.val is None and source.split_field is None and not source.val_fraction:
        raise ConfigError(f"mixture source {name!r}: evaluate_only needs validation rows (val, split_field or val_fraction)")
    if source.val_unseen and source.evaluate_only:
        raise ConfigError(f"mixture source {name!r}: val_unseen drops rows like ones trained on; an evaluate_only source trains on none")
    return source


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` on top; tables merge key by key, except a source's label mapping,
    which an override replaces whole (half of one mapping and half of another would be neither)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "labels":
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _read_table(path: str, seen: tuple[str, ...]) -> dict[str, Any]:
    """The TOML table of a mixture file, with the file its ``extends`` names (relative to it) underneath."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--mixture {path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--mixture {path}: not valid TOML ({err})") from None
    parent = table.pop("extends", None)
    if parent is None:
        return table
    parent = os.path.join(os.path.dirname(path), str(parent))
    if os.path.abspath(parent) in seen:
        raise ConfigError(f"--mixture {path}: 'extends' loops back to {parent}")
    return _merged(_read_table(parent, (*seen, os.path.abspath(path))), table)


def load_mixture(path: str) -> Mixture:
    """Reads and checks a mixture file.

    Args:
      path: a TOML file (see ``mixtures/default.toml``); one with ``extends = "other.toml"`` (a
        path relative to it) is that file with its own keys on top, source by source.

    Returns:
      The :class:`Mixture`.

    Raises:
      ConfigError: naming the source and key at fault.
    """
    table = _read_table(path, ())
    classes = tuple(table.get("classes", ()))
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"--mixture {path}: 'classes' must list at least two distinct class names")
    sources = tuple(_source(name, t, classes) for name, t in table.get("sources", {}).items())
    if not sources:
        raise ConfigError(f"--mixture {path}: no [sources.<name>] tables")
    use = table.get("use")
    if use not in USES:
        raise ConfigError(f"--mixture {path}: 'use' must be one of {list(USES)}, got {use!r}")
    restricted = [
        f"{s.name} ({s.licence})" for s in sources if s.licence not in PERMISSIVE_LICENCES and not s.evaluate_only
    ]
    if use == "default" and restricted:
        raise ConfigError(
            f"--mixture {path}: use = 'default' trains a redistributed, commercially usable model, but the "
            f"licences of {', '.join(restricted)} allow only selection, evaluation or a research model: mark them "
            "evaluate_only = true, drop them, or set use = 'research' (and name the model as a research model)"
        )
    if all(s.evaluate_only for s in sources):
        raise ConfigError(f"--mixture {path}: every source is evaluate_only; nothing to train on")
    return Mixture(classes=classes, seed=int(table.get("seed", 0)), sources=sources, use=use)
