"""``moderate-adapt``: a model adapted to a platform's own labels, from a reviewed sample or any labeled file.

For example::

    moderate-adapt --model default --reviewed out/run/review-*.parquet \\
        --label_map 'offensive=hate|offensive,not=neither' --output models/ours

writes a model folder both jobs run with ``--model models/ours``: the adapter,
thresholds for ``--precision_target`` chosen on held-out rows, the starting
model's target head and preprocessing, ``training_data.json``,
``adapt_report.json`` (before/after estimates with 95% intervals, the
selection, the learning curve) and a ``README.md`` card.  Training is the
training package's :func:`flaxmodel.training.adapt` (no Beam); this job parses
the flags generated from its settings, prints the figures and writes the
report.  Bad flags, unknown labels, empty files or files with no reviewed row
end with one ``moderate-adapt: error: ...`` line and exit status 2, before any
training.  Rerunning an interrupted command goes on from its last finished step.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import sys
from typing import Sequence

from flaxmodel import OptionError
from flaxmodel.commands import run_command
from flaxmodel.flags import add_flags, from_namespace

PROG = "moderate-adapt"
DESCRIPTION = (
    "Adapts a moderation model to your own labels (a reviewed review sample or any labeled file) without "
    "forgetting what your labels do not decide; writes a model folder for --model."
)


def _training():
    try:
        import flaxmodel.training as training
    except ImportError as err:
        raise OptionError(f"{PROG} needs the training extra ({err.name} is missing): pip install -e '.[train]'") from None
    return training


def build_parser() -> argparse.ArgumentParser:
    """Every :class:`~flaxmodel.training.AdaptConfig` flag, plus ``--stop_after_units`` and ``--quiet``."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_flags(parser, _training().AdaptConfig)
    parser.add_argument(
        "--stop_after_units",
        type=int,
        default=None,
        help="Stop after this many training units (kept); rerunning the command goes on. Not a setting.",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    return parser


def parse_command_line(argv: Sequence[str]):
    """``(settings, --stop_after_units, --quiet)``; unknown flags name the closest real one."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        known = [a.lstrip("-") for action in parser._actions for a in action.option_strings if a.startswith("--")]
        problems = []
        for flag in unknown:
            name = flag.lstrip("-").split("=")[0]
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            problems.append(f"unknown flag {flag}" + (f"; did you mean --{close[0]}?" if close else ""))
        raise OptionError("; ".join(problems))
    config = from_namespace(_training().AdaptConfig, args)
    return config, args.stop_after_units, args.quiet


def _adapt(argv: Sequence[str]) -> int:
    from pipelines.reporting.adapted import comparison_rows, report_files

    config, stop_after, quiet = parse_command_line(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    written: dict[str, dict] = {}

    def report(outcome) -> dict[str, bytes]:
        files = report_files(outcome, config.benign_label)
        written["report"] = json.loads(files["adapt_report.json"])
        return files

    outcome = _training().adapt(config, report=report, stop_after_units=stop_after, progress=not quiet)
    if outcome is None:
        print(f"stopped after {stop_after} training units; rerun the same command to go on")
        return 0
    rows = comparison_rows(written["report"])
    width = max(len(r[0]) for r in rows)
    print(f"{len(outcome.rows)} rows ({len(outcome.held)} held out), {outcome.seconds:.0f} s; chosen: learning rate "
          f"{outcome.chosen['learning_rate']:g}, {outcome.chosen['epochs']} epochs")  # fmt: skip
    print(f"  {'':<{width}}  {'starting model':<28}  adapted")
    for name, before, after in rows:
        print(f"  {name:<{width}}  {before:<28}  {after}")
    curve = ", ".join(f"{p['rows']} rows {100 * p['macro_f1']:.1f}" for p in outcome.curve)
    print(f"learning curve (held-out macro F1): {curve}")
    print("seconds: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in outcome.phases.items()))
    print(f"model: {config.output} (report: adapt_report.json, card: README.md)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``moderate-adapt``; returns its exit status (2 after a one-line error)."""
    return run_command(PROG, lambda: _adapt(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
