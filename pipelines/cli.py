"""Running a pipeline from the command line, shared by ``moderate`` and ``moderate-evaluate``.

Parses Beam's command line, refuses flags that neither the job nor Beam knows
(naming the closest real one), prints ``--help`` with the job's own options
grouped apart from Beam's, builds the graph (a configuration error raises
before any data is read; :func:`flaxmodel.commands.run_command` prints it as
``PROG: error: ...`` with exit status 2, as for every command of the project),
runs it to completion and returns the summary computed from the run's metrics.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
import time
from typing import Any, Callable, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from flaxmodel import OptionError
from pipelines.options import ModerationOptions
from pipelines.sinks import Summary, summarize

_BEAM_EPILOG = (
    "Every other Apache Beam and Dataflow pipeline option (--project, --region, --temp_location, "
    "--worker_machine_type, --experiments, ...) is accepted too and passed to the runner."
)


def help_text(prog: str, description: str, option_classes: Sequence[type[PipelineOptions]]) -> str:
    """``--help``: the job's options (with defaults) in their own groups, then Beam's most used ones."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=_BEAM_EPILOG, add_help=False)
    parser.add_argument("-h", "--help", action="store_true", help="Show this help and exit.")
    for cls in option_classes:
        cls._add_argparse_args(parser.add_argument_group(f"{prog} options"))
    beam_group = parser.add_argument_group("Beam options (common)")
    for cls in (StandardOptions, DirectOptions):
        cls._add_argparse_args(beam_group)
    return parser.format_help()


def unknown_flags(argv: Sequence[str]) -> list[str]:
    """Messages for each ``--flag`` no registered options class (ours, Beam's, the runners') defines."""
    options = PipelineOptions(list(argv))
    beam_log = logging.getLogger("apache_beam.options.pipeline_options")
    level = beam_log.level
    # Beam warns that it discards what it cannot parse; we refuse it instead, so its warning is noise.
    beam_log.setLevel(logging.ERROR)
    try:
        known = set(options.get_all_options())
    finally:
        beam_log.setLevel(level)
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - known)
    messages = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean --{close[0]}?" if close else ""
        messages.append(f"unknown flag --{name}{hint}")
    return messages


def _check_common(options: PipelineOptions) -> None:
    fraction = options.view_as(ModerationOptions).max_dead_letter_fraction
    if not 0.0 <= fraction <= 1.0:
        raise OptionError(f"--max_dead_letter_fraction {fraction}: must be in [0, 1] (1 turns the check off)")


def run_job(
    prog: str,
    build: Callable[[beam.Pipeline, PipelineOptions], Any],
    argv: Sequence[str] | None,
    *,
    description: str = "",
    option_classes: Sequence[type[PipelineOptions]] = (ModerationOptions,),
) -> tuple[Summary, PipelineOptions]:
    """Builds and runs ``build``'s graph; run it through :func:`flaxmodel.commands.run_command`.

    Args:
      prog: the command's name, for ``--help``.
      build: adds the graph to a pipeline; raises a ``ModerationError`` for a flag that cannot work.
      argv: the command line (default: ``sys.argv[1:]``).
      description: the command's one-line description for ``--help``.
      option_classes: the job's own options classes, listed first by ``--help``.

    Returns:
      The run's summary and options.

    Raises:
      OptionError: for flags nobody knows, and the build's ``ModerationError`` s, before any data is read.
      SystemExit: 0 after printing ``--help``.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(help_text(prog, description, option_classes))
        raise SystemExit(0)
    problems = unknown_flags(argv)
    if problems:
        raise OptionError("; ".join(problems))
    options = PipelineOptions(argv)
    pipeline = beam.Pipeline(options=options)
    _check_common(options)
    graph = build(pipeline, options)
    start = time.perf_counter()
    result = pipeline.run()
    result.wait_until_finish()
    limit = options.view_as(ModerationOptions).max_dead_letter_fraction
    summary = summarize(result, time.perf_counter() - start, graph.labels, max_dead_letter_fraction=limit)
    return summary, options
