"""The moderation pipeline: text shards in, labeled Parquet out.

``python -m pipelines.moderate --input GLOB [--input GLOB ...] --output DIR
[--model CHECKPOINT] [flags of pipelines.options] [Beam options]``

Read (:class:`~pipelines.io.ReadRecords`) -> classify
(:class:`~pipelines.classify.ClassifyRecords`) -> ``DIR/labels-*.parquet``, and
every record that could not be labeled -> ``DIR/dead_letter-*.parquet``
(schemas in :mod:`pipelines.outputs`).  Both are written into the run's own
attempt folder in ``DIR`` and moved into ``DIR`` by a last step once both are
complete (:class:`~pipelines.io.CommitOutputs`), so a killed run leaves no
outputs and a re-run into the same ``DIR`` needs no cleaning; a ``DIR`` holding a
complete earlier run is refused unless ``--overwrite`` is given, which replaces
those outputs in that last step.  :func:`build` constructs the graph
without running it (the deploy and evaluation code reuse it); everything that
can be checked before reading data (globs, model, thresholds, output columns)
is checked there.  The same code runs on the DirectRunner (in-process or
``--direct_running_mode=multi_processing``) and on Dataflow with its standard
options.  Every transform lives in an importable module of this package, so
workers need no ``--save_main_session``.  At the end, :func:`main` prints a
summary from the run's metrics and exits 1 if any record went missing.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.classify import ClassifyRecords
from pipelines.cli import EXIT_CONFIGURATION_ERROR, run_pipeline
from pipelines.handler import ModelSpec
from pipelines.io import FinishRun, ReadRecords, WriteParquet, start_attempt
from pipelines.options import ModerationOptions
from pipelines.outputs import (
    DEAD_LETTER_NAME,
    DEAD_LETTER_SCHEMA,
    LABELS_NAME,
    dead_letter_row,
    label_table,
    labels_schema,
    shard_pattern,
)
from pipelines.thresholds import resolve_thresholds

@dataclasses.dataclass(frozen=True)
class ModerationGraph:
    """The main PCollections of a built pipeline (record and scored blocks, label tables, dead
    letters), and the model's labels."""

    records: beam.PCollection
    scored: beam.PCollection
    label_rows: beam.PCollection
    dead_letters: beam.PCollection
    labels: tuple[str, ...]
    model: ModelSpec


def build(pipeline: beam.Pipeline, options: PipelineOptions, *, validate: bool = True) -> ModerationGraph:
    """Adds the moderation graph to ``pipeline``; raises before any data is read if a flag cannot work.

    ``validate=False`` skips the checks that touch the inputs and the output
    directory (matching globs, existing outputs) and the removal of killed
    runs' attempt folders, for building a graph on a machine that cannot reach
    them.  The model is always loaded, since the output schema comes from its
    labels.
    """
    opts = options.view_as(ModerationOptions)
    opts.check_required()
    read = ReadRecords.from_options(opts, validate=validate)
    classify = ClassifyRecords.from_options(opts)
    labels = classify.labels
    thresholds = resolve_thresholds(opts.threshold, labels, classify.settings.model)
    keep_fields = read.spec.keep_fields
    schema = labels_schema(labels, keep_text=opts.keep_text, keep_fields=keep_fields)
    owned = (shard_pattern(LABELS_NAME), shard_pattern(DEAD_LETTER_NAME))
    attempt = start_attempt(opts.output, owned, overwrite=opts.overwrite, validate=validate)

    records, read_failures = pipeline | "Read" >> read
    scored, inference_failures = records | "Classify" >> classify
    label_rows = scored | "LabelRows" >> beam.Map(
        label_table, schema, labels, thresholds, keep_text=opts.keep_text, keep_fields=keep_fields
    )
    dead_letters = (read_failures, inference_failures) | "DeadLetters" >> beam.Flatten()
    label_files = label_rows | "WriteLabels" >> WriteParquet(attempt.folder, LABELS_NAME, schema, tables=True)
    dead_letter_files = (
        dead_letters
        | "DeadLetterRows" >> beam.Map(dead_letter_row)
        | "WriteDeadLetters" >> WriteParquet(attempt.folder, DEAD_LETTER_NAME, DEAD_LETTER_SCHEMA)
    )
    finish = FinishRun(attempt, (records, read_failures), dead_letters, opts.max_dead_letter_fraction)
    _ = (label_files, dead_letter_files) | "FinishRun" >> finish
    return ModerationGraph(records, scored, label_rows, dead_letters, labels, classify.spec)


def main(argv: Sequence[str] | None = None) -> int:
    outcome = run_pipeline("moderate", build, argv, description=__doc__.split("\n\n")[0])
    if outcome is None:
        return EXIT_CONFIGURATION_ERROR
    summary, _ = outcome
    print(summary.render())
    return 0 if summary.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
