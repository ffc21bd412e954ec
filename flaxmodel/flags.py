"""Command-line flags generated from a settings dataclass, so each setting is declared once.

A field declared with :func:`flag` carries its help text (and choices) next to
its type and default; :func:`add_flags` turns every such field into an
argparse option ``--<field name>`` and :func:`from_namespace` builds the
dataclass back from the parsed values.  Training (``TrainConfig``) and the
pipelines (``ClassifySettings``) both declare their flags this way, and help
texts show each default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Sequence

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def parse_bool(value: str) -> bool:
    """A boolean flag's value; Dataflow Flex Templates pass every parameter as ``--name=value``."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(_TRUE + _FALSE)}, got {value!r}")


def parse_list(value: str) -> tuple[str, ...]:
    """A comma-separated flag value as a tuple, blanks dropped."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def add_bool_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, **kwargs: Any) -> None:
    """Adds ``--name`` that takes no value (true) or ``--name=true|false`` (as Flex Templates pass it)."""
    parser.add_argument(f"--{name}", nargs="?", const=True, type=parse_bool, metavar="true|false", **kwargs)


def flag(default: Any = dataclasses.MISSING, help: str = "", *, choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field that is also a command-line flag (no default: the flag is required)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def _base_type(hint: Any) -> Any:
    """``int`` of ``int | None``; other hints unchanged."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type) -> None:
    """Adds ``--<name>`` for every :func:`flag` field of dataclass ``cls`` to ``parser``.

    Booleans take ``--name`` or ``--name=true|false``; tuples take comma-separated
    values; ``X | None`` fields default to None.  A field without a default is a
    required flag.
    """
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if "help" not in field.metadata:
            continue
        kind = _base_type(hints[field.name])
        required = field.default is dataclasses.MISSING
        kwargs: dict[str, Any] = {"help": field.metadata["help"], "dest": field.name}
        if not required:
            kwargs["default"] = field.default
            shown = ",".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
            if shown not in (None, ""):
                kwargs["help"] += f" (default: {shown})"
        else:
            kwargs["required"] = True
        if kind is bool:
            add_bool_flag(parser, field.name, **kwargs)
            continue
        if typing.get_origin(kind) is tuple:
            kwargs["type"] = parse_list
        elif kind in (int, float, str):
            kwargs["type"] = kind
        else:
            raise TypeError(f"{cls.__name__}.{field.name}: no flag parser for type {kind!r}")
        if field.metadata.get("choices"):
            kwargs["choices"] = tuple(field.metadata["choices"])
        parser.add_argument(f"--{field.name}", **kwargs)


def from_namespace(cls: type, namespace: Any, **overrides: Any) -> Any:
    """An instance of dataclass ``cls`` from parsed flags (attributes of ``namespace``)."""
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls) if hasattr(namespace, f.name)}
    return cls(**{**values, **overrides})
