"""Running a pipeline from the command line, shared by ``moderate`` and ``moderate-evaluate``.

Parses Beam's command line, builds the graph (a configuration error is printed
as ``PROG: error: ...`` and becomes exit status 2, before any data is read),
runs it to completion and returns the summary computed from the run's metrics.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from flaxmodel import ModerationError
from pipelines.metrics import Summary, summarize

EXIT_CONFIGURATION_ERROR = 2


def run_pipeline(
    prog: str, build: Callable[[beam.Pipeline, PipelineOptions], Any], argv: Sequence[str] | None
) -> tuple[Summary, PipelineOptions] | None:
    """Builds and runs ``build``'s graph; ``None`` (after printing why) if the configuration is bad."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = PipelineOptions(list(sys.argv[1:] if argv is None else argv))
    pipeline = beam.Pipeline(options=options)
    try:
        graph = build(pipeline, options)
    except ModerationError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return None
    start = time.perf_counter()
    result = pipeline.run()
    result.wait_until_finish()
    return summarize(result, time.perf_counter() - start, graph.labels), options
