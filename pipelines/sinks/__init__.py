"""Sinks: label tables and dead letters written as Parquet, committed once complete, the run's summary.

The jobs end here: :func:`label_table` fills the fixed labels schema from the
model step's scored blocks (with the flag thresholds of :mod:`.flagging`),
:class:`WriteParquet` writes into the run's attempt folder, :class:`FinishRun`
commits the outputs and guards the dead-letter share, :func:`summarize` reads
the run's metrics back, :mod:`.evaluation` builds the evaluation report, :mod:`.review`
draws the review sample and :mod:`.estimates` estimates quality from its reviewed copy.
"""

from pipelines.sinks.commit import (
    CommitOutputs,
    OutputAttempt,
    WriteParquet,
    check_output,
    commit_outputs,
    remove_stale_attempts,
    stale_attempts,
    start_attempt,
)
from pipelines.sinks.evaluation import (
    CollectScores,
    allowed_classes,
    build_report,
    parse_target_set,
    report_files,
    true_and_scores,
    write_outputs,
)
from pipelines.sinks.flagging import NO_THRESHOLDS, flagged_column, parse_thresholds, resolve_thresholds
from pipelines.sinks.guard import DeadLetterLimitExceeded, FinishRun, GuardDeadLetters, dead_letter_excess
from pipelines.sinks.outputs import DEAD_LETTER_SCHEMA, FIXED_COLUMNS, DeadLetterRows, label_table, labels_schema
from pipelines.sinks.review import WriteReviewSample, allocate, review_schema, strata, unit_hashes
from pipelines.sinks.summary import Summary, summarize

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "FIXED_COLUMNS",
    "NO_THRESHOLDS",
    "CollectScores",
    "CommitOutputs",
    "DeadLetterLimitExceeded",
    "DeadLetterRows",
    "FinishRun",
    "GuardDeadLetters",
    "OutputAttempt",
    "Summary",
    "WriteParquet",
    "WriteReviewSample",
    "allocate",
    "build_report",
    "check_output",
    "commit_outputs",
    "dead_letter_excess",
    "flagged_column",
    "label_table",
    "labels_schema",
    "parse_target_set",
    "parse_thresholds",
    "remove_stale_attempts",
    "report_files",
    "resolve_thresholds",
    "review_schema",
    "stale_attempts",
    "start_attempt",
    "strata",
    "summarize",
    "allowed_classes",
    "true_and_scores",
    "unit_hashes",
    "write_outputs",
]
