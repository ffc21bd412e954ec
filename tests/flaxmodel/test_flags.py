"""Flags generated from a settings dataclass: types, defaults in the help, required flags, round trip."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from flaxmodel.flags import add_flags, flag, from_namespace


@dataclasses.dataclass(frozen=True)
class Settings:
    data: str = flag(help="Where the data is.")
    steps: int = flag(3, "Steps to run.")
    rate: float = flag(0.5, "A rate.")
    mode: str = flag("fast", "How to run.", choices=("fast", "slow"))
    names: tuple[str, ...] = flag(("a", "b"), "Comma-separated names.")
    model: str | None = flag(None, "Optional model folder.")
    verbose: bool = flag(False, "Say more.")
    derived: int = 7  # not a flag: no help


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="x")
    add_flags(parser, Settings)
    return parser


def test_defaults_round_trip_to_the_dataclass():
    settings = from_namespace(Settings, _parser().parse_args(["--data", "d.csv"]))
    assert settings == Settings(data="d.csv")


def test_values_are_parsed_by_their_field_types():
    args = ["--data=d", "--steps", "9", "--rate", "1e-3", "--mode", "slow", "--names", "x, y,,z", "--model", "m", "--verbose"]
    settings = from_namespace(Settings, _parser().parse_args(args))
    assert settings == Settings("d", 9, 1e-3, "slow", ("x", "y", "z"), "m", True)
    assert from_namespace(Settings, _parser().parse_args(["--data=d", "--verbose=false"])).verbose is False


@pytest.mark.parametrize("args", [[], ["--data=d", "--steps", "many"], ["--data=d", "--mode", "medium"], ["--data=d", "--derived", "1"]])
def test_bad_or_missing_values_are_refused(args, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(args)


def test_help_lists_every_flag_with_its_default():
    text = " ".join(_parser().format_help().split())
    for name in ("--data", "--steps", "--rate", "--mode", "--names", "--model", "--verbose"):
        assert name in text
    assert "Steps to run. (default: 3)" in text and "(default: a,b)" in text
    assert "--derived" not in text
