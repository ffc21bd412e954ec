"""The ``flaxmodel-train`` command line, generated from :class:`~flaxmodel.training.config.TrainConfig`.

Every setting's flag, type, default and help text come from its field, so the
parser cannot drift from the settings.  ``--recipe`` (:mod:`~flaxmodel.training.recipe`)
replaces those defaults with a recipe's values, under the flags given;
``--stop_after_steps``, which says when this invocation stops rather than what
the run is, is added by hand.  The body runs through
:func:`flaxmodel.commands.run_command`: bad settings or a bad recipe end the
command with one ``flaxmodel-train: error: ...`` line and exit status 2, before
any data is read.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any, Mapping, Sequence

from flaxmodel.commands import run_command
from flaxmodel.flags import add_flags, from_namespace
from flaxmodel.training.config import TrainConfig
from flaxmodel.training.loop import train
from flaxmodel.training.recipe import load_recipe, shipped_recipes

PROG = "flaxmodel-train"
DESCRIPTION = (
    "Fine-tunes a text classifier (fully or with LoRA) on labeled data. "
    "Run the same command again to resume an interrupted run."
)


def _add_recipe_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe",
        default=None,
        help="Recipe file (TOML of these settings) or the name of a shipped recipe "
        f"({', '.join(shipped_recipes())}): its values replace the defaults; flags given here win.",
    )


def build_parser(recipe: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """The parser of every :class:`TrainConfig` flag plus ``--recipe`` and ``--stop_after_steps``.

    Args:
      recipe: settings (from :func:`~flaxmodel.training.recipe.load_recipe`) that replace the
        fields' defaults; the help lists them.

    Returns:
      The parser.
    """
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    _add_recipe_flag(parser)
    add_flags(parser, TrainConfig)
    parser.add_argument(
        "--stop_after_steps",
        type=int,
        default=None,
        help="Checkpoint and stop at this global step; not part of the run's settings, so a rerun goes on.",
    )
    if recipe:
        parser.set_defaults(**recipe)
        # The flags' help texts show the fields' own defaults.
        shown = ", ".join(f"{key}={','.join(v) if isinstance(v, tuple) else v}" for key, v in recipe.items())
        parser.epilog = f"The recipe replaces these defaults: {shown}."
    return parser


def parse_command_line(argv: Sequence[str] | None = None) -> tuple[TrainConfig, int | None]:
    """The run's settings from a command line: the recipe's values, under the flags given.

    Args:
      argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
      ``(settings, --stop_after_steps)``.

    Raises:
      ConfigError: for a recipe that cannot be read or has unknown keys or wrongly typed values.
      SystemExit: argparse's, for flags it cannot parse (status 2) and for ``--help``.
    """
    # The recipe must be known before the parser that takes its values as defaults is built.
    finder = argparse.ArgumentParser(prog=PROG, add_help=False)
    _add_recipe_flag(finder)
    recipe = finder.parse_known_args(argv)[0].recipe
    args = build_parser(load_recipe(recipe) if recipe else None).parse_args(argv)
    # An empty --labels means none given, as leaving the flag out does.
    return from_namespace(TrainConfig, args, labels=args.labels or None), args.stop_after_steps


def _train(argv: Sequence[str] | None) -> None:
    config, stop_after_steps = parse_command_line(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # orbax reports every save step by step through absl at INFO.
    logging.getLogger("absl").setLevel(logging.WARNING)
    result = train(config, stop_after_steps=stop_after_steps)
    summary = {
        "step": result.step,
        "total_steps": result.total_steps,
        "best_folder": result.best_folder,
        "best_epoch": result.best_epoch,
        "best_val_macro_f1": result.best_macro_f1,
    }
    print(json.dumps(summary, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Parses ``argv`` (default: ``sys.argv[1:]``), trains and prints a JSON summary.

    Args:
      argv: the command line's arguments.

    Returns:
      The exit status: 0, or 2 after ``flaxmodel-train: error: MESSAGE`` on stderr for a
      :class:`~flaxmodel.errors.ModerationError` (settings, recipe, data or checkpoints at fault).
    """
    return run_command(PROG, lambda: _train(argv))
