"""The ``flaxmodel-train`` command line, generated from :class:`~flaxmodel.training.config.TrainConfig`.

Every setting's flag, type, default and help text come from its field, so the
parser cannot drift from the settings; only ``--stop_after_steps``, which says
when this invocation stops rather than what the run is, is added by hand.  The
body runs through :func:`flaxmodel.commands.run_command`: bad settings end the
command with one ``flaxmodel-train: error: ...`` line and exit status 2, before
any data is read.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Sequence

from flaxmodel.commands import run_command
from flaxmodel.flags import add_flags, from_namespace
from flaxmodel.training.config import TrainConfig
from flaxmodel.training.loop import train

PROG = "flaxmodel-train"
DESCRIPTION = (
    "Fine-tunes a text classifier (fully or with LoRA) on labeled data. "
    "Run the same command again to resume an interrupted run."
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every :class:`TrainConfig` flag plus ``--stop_after_steps``."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_flags(parser, TrainConfig)
    parser.add_argument(
        "--stop_after_steps",
        type=int,
        default=None,
        help="Checkpoint and stop at this global step; not part of the run's settings, so a rerun goes on.",
    )
    return parser


def _train(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    # An empty --labels means none given, as leaving the flag out does.
    config = from_namespace(TrainConfig, args, labels=args.labels or None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # orbax reports every save step by step through absl at INFO.
    logging.getLogger("absl").setLevel(logging.WARNING)
    result = train(config, stop_after_steps=args.stop_after_steps)
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
      :class:`~flaxmodel.errors.ModerationError` (settings, data or checkpoints at fault).
    """
    return run_command(PROG, lambda: _train(argv))
