"""Named training recipes: TOML files of training settings that a command line starts from.

A recipe (``recipes/default.toml`` is the default model's) sets any
:class:`~flaxmodel.training.config.TrainConfig` field but ``output``, under the
field's name and in its type (a list where the flag takes a comma-separated
one).  ``--recipe`` makes its values the command line's defaults, so a flag
given on the command line wins.  Relative paths in a recipe are relative to the
recipe's folder, as a mixture's ``extends`` is to its file, so a recipe finds
the mixture it names wherever the command runs.  ``--recipe`` takes a file or
the name of a recipe shipped in ``recipes/`` (``--recipe default``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from typing import Any

from flaxmodel.ckpts import files
from flaxmodel.errors import ConfigError
from flaxmodel.training.config import TrainConfig

RECIPES = os.path.join(os.path.dirname(__file__), "recipes")
# Settings that name files or folders, each comma-separated part a path (train and val take lists).
PATH_SETTINGS = ("train", "val", "mixture", "data_root", "model", "teachers")
# Where a run goes is each invocation's choice: two runs of one recipe (two seeds) must not share it.
NOT_IN_RECIPES = ("output",)
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def shipped_recipes() -> list[str]:
    """The names of the recipes in ``recipes/``, sorted."""
    return sorted(name.removesuffix(".toml") for name in os.listdir(RECIPES) if name.endswith(".toml"))


def recipe_file(recipe: str) -> str:
    """The file ``--recipe`` names: ``recipe`` itself if it is a file, else the shipped recipe of that name.

    Args:
      recipe: a path, or a name of :func:`shipped_recipes`.

    Returns:
      The recipe file's path.

    Raises:
      ConfigError: when it is neither.
    """
    if os.path.isfile(recipe):
        return recipe
    shipped = os.path.join(RECIPES, f"{recipe}.toml")
    if os.sep not in recipe and os.path.isfile(shipped):
        return shipped
    raise ConfigError(f"--recipe {recipe}: no such file, nor a shipped recipe ({', '.join(shipped_recipes())})")


def _expected(hint: Any) -> Any:
    """The type a setting's value must have: ``int`` of ``int | None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint


def _typed(path: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` as the setting ``key`` holds it (lists as tuples, integers as floats where a float is due)."""
    kind = _expected(hint)
    if typing.get_origin(kind) is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        described = "a list of strings"
    else:
        # TOML's booleans are not integers here, though Python's are; an integer is a fine float.
        accepted = (int, float) if kind is float else (kind,)
        if isinstance(value, accepted) and (kind is bool or not isinstance(value, bool)):
            return float(value) if kind is float else value
        described = _KINDS[kind]
    raise ConfigError(f"--recipe {path}: {key} must be {described}, as --{key} takes; got {value!r}")


def _resolved(folder: str, value: str) -> str:
    """``value``'s comma-separated paths, the relative ones made relative to ``folder``."""
    parts = []
    for part in value.split(","):
        part = part.strip()
        if part and not files.is_remote(part) and not os.path.isabs(part):
            part = os.path.normpath(os.path.join(folder, part))
        parts.append(part)
    return ",".join(parts)


def load_recipe(recipe: str) -> dict[str, Any]:
    """Reads and checks a recipe.

    Args:
      recipe: a recipe file or the name of a shipped one (see :func:`recipe_file`).

    Returns:
      Setting name -> value, typed as :class:`TrainConfig`'s field, paths relative to the
      recipe's folder made relative to the working directory (or absolute, as the recipe's path is).

    Raises:
      ConfigError: naming the file and the key at fault: an unknown key, ``output``, or a value of
        the wrong type.
    """
    path = recipe_file(recipe)
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--recipe {path}: not valid TOML ({err})") from None
    hints = typing.get_type_hints(TrainConfig)
    known = sorted(f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_IN_RECIPES)
    for key in NOT_IN_RECIPES:
        if key in table:
            raise ConfigError(f"--recipe {path}: {key} is each run's own; give --{key} on the command line")
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"--recipe {path}: unknown settings {unknown}; a recipe sets {', '.join(known)}")
    values = {key: _typed(path, key, value, hints[key]) for key, value in table.items()}
    folder = os.path.dirname(path)
    for key in PATH_SETTINGS:
        if isinstance(values.get(key), str):
            values[key] = _resolved(folder, values[key])
        elif isinstance(values.get(key), tuple):
            values[key] = tuple(_resolved(folder, v) for v in values[key])
    return values
