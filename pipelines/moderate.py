"""The moderation pipeline: text shards in, labeled Parquet out.

``python -m pipelines.moderate --input GLOB [--input GLOB ...] --output DIR
[--model CHECKPOINT] [flags of pipelines.options] [Beam options]``

Read (:class:`~pipelines.sources.ReadRecords`) -> classify
(:class:`~pipelines.model.ClassifyRecords`) -> ``DIR/labels-*.parquet``, and
every record that could not be labeled -> ``DIR/dead_letter-*.parquet``
(schemas in :mod:`pipelines.sinks.outputs`), and with ``--review_sample N`` up to N
records drawn for human review -> ``DIR/review-*.parquet``
(:mod:`pipelines.sinks.review`).  All are written into the run's own
attempt folder in ``DIR`` and moved into ``DIR`` by a last step once both are
complete (:class:`~pipelines.sinks.commit.CommitOutputs`), so a killed run leaves no
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

from flaxmodel import ModelRef
from flaxmodel.commands import EXIT_FAILED, EXIT_OK, run_command
from pipelines.cli import run_job
from pipelines.model import ClassifyRecords
from pipelines.names import DEAD_LETTER_NAME, LABELS_NAME, REVIEW_NAME, shard_pattern
from pipelines.options import ModerationOptions, ReviewSettings
from pipelines.sinks import (
    DEAD_LETTER_SCHEMA,
    DeadLetterRows,
    FinishRun,
    WriteParquet,
    WriteReviewSample,
    label_table,
    labels_schema,
    resolve_thresholds,
    start_attempt,
)
from pipelines.sources import ReadRecords


@dataclasses.dataclass(frozen=True)
class ModerationGraph:
    """The main PCollections of a built pipeline (record and scored blocks, label tables, dead
    letters), and the model's labels."""

    records: beam.PCollection
    scored: beam.PCollection
    label_rows: beam.PCollection
    dead_letters: beam.PCollection
    labels: tuple[str, ...]
    model: ModelRef


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
    thresholds = resolve_thresholds(opts.threshold, classify.model)
    targets = dict(classify.model.target_thresholds)
    keep_fields = read.spec.keep_fields
    schema = labels_schema(labels, targets=tuple(targets), keep_text=opts.keep_text, keep_fields=keep_fields)
    review = ReviewSettings.from_options(opts)
    # The review sample is one of the run's outputs even when off: an overwrite without it removes the old one,
    # which would no longer match the labels.
    owned = tuple(shard_pattern(name) for name in (LABELS_NAME, DEAD_LETTER_NAME, REVIEW_NAME))
    attempt = start_attempt(opts.output, owned, overwrite=opts.overwrite, validate=validate)

    records, read_failures = pipeline | "Read" >> read
    scored, inference_failures = records | "Classify" >> classify
    label_rows = scored | "LabelRows" >> beam.Map(
        label_table, schema, labels, thresholds, targets=targets, keep_text=opts.keep_text, keep_fields=keep_fields
    )
    dead_letters = (read_failures, inference_failures) | "DeadLetters" >> beam.Flatten()
    label_files = label_rows | "WriteLabels" >> WriteParquet(attempt.folder, LABELS_NAME, schema, tables=True)
    dead_letter_files = (
        dead_letters
        | "DeadLetterRows" >> beam.ParDo(DeadLetterRows())
        | "WriteDeadLetters" >> WriteParquet(attempt.folder, DEAD_LETTER_NAME, DEAD_LETTER_SCHEMA)
    )
    written = [label_files, dead_letter_files]
    if review.review_sample:
        sample = WriteReviewSample(attempt.folder, labels, thresholds, targets, keep_fields, review)
        written.append(scored | "ReviewSample" >> sample)
    finish = FinishRun(attempt, (records, read_failures), dead_letters, opts.max_dead_letter_fraction)
    _ = tuple(written) | "FinishRun" >> finish
    return ModerationGraph(records, scored, label_rows, dead_letters, labels, classify.model)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("moderate", lambda: _moderate(argv))


def _moderate(argv: Sequence[str] | None) -> int:
    summary, _ = run_job("moderate", build, argv, description=__doc__.split("\n\n")[0])
    print(summary.render())
    return EXIT_OK if summary.succeeded else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
