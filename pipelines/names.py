"""The one definition of every name the pipelines' steps share: output files, tagged outputs, metrics.

Everything that a reader of the outputs, a dashboard over the Beam metrics or
another step matches by name is spelled here once.
"""

from __future__ import annotations

# Output file name prefixes: DIR/labels-*.parquet, DIR/dead_letter-*.parquet and, with --review_sample,
# DIR/review-*.parquet (the records drawn for human review).
LABELS_NAME = "labels"
DEAD_LETTER_NAME = "dead_letter"
REVIEW_NAME = "review"
# Columns the review sample adds to a label row: the stratum a record was drawn from and the probability
# of drawing it; reviewers add HUMAN_LABEL (and optionally HUMAN_TARGETS, groups joined by "|").
REVIEW_REASON = "review_reason"
INCLUSION_PROBABILITY = "inclusion_probability"
HUMAN_LABEL = "human_label"
HUMAN_TARGETS = "human_targets"
# Strata of the review sample: a class score near its threshold, flagged, else the top label.
NEAR_THRESHOLD_STRATUM = "near_threshold"
FLAGGED_STRATUM = "flagged"
LABEL_STRATUM_PREFIX = "label:"
# Target-group columns a model with a target head writes, one per group: target_<group>, and the list of
# the groups whose score reached the model's threshold.
TARGET_COLUMN_PREFIX = "target_"
TARGETS = "targets"
# Each run writes under DIR/_attempt-<id>/ until its outputs are complete, then moves them into DIR
# (pipelines.sinks.commit).  `*` in a Beam or shell glob never crosses a `/`, and the leading underscore
# hides the folder from readers that skip such names (Spark, Hive, pyarrow datasets).
ATTEMPT_PREFIX = "_attempt-"
# The evaluation job's outputs besides its dead letters.
REPORT_FILE = "report.json"
CONFUSION_PNG = "confusion_matrix.png"
# moderate-evaluate --reviewed: the weighted estimates from a reviewed sample.
ESTIMATES_FILE = "review_estimates.json"
# moderate-report: the page, its figures (REPORT_PNG_PREFIX*.png) and its figures as data.
REPORT_HTML = "report.html"
REPORT_JSON = "run_report.json"
REPORT_PNG_PREFIX = "report-"

# The tagged output every step sends its dead letters to.
DEAD_LETTER_TAG = "dead_letter"

# Every counter, gauge and distribution of the jobs lives in this Beam metrics namespace.
NAMESPACE = "moderation"
# Dead letters written, in all and per reason ("dead_letter_invalid_json").
DEAD_LETTERED = "dead_lettered"
DEAD_LETTER_COUNTER_PREFIX = "dead_letter_"
# Records labeled by each model identity (name@hash:precision), as the worker that ran it names it.
MODEL_COUNTER_PREFIX = "model:"
# Records whose targets name each group ("targets_race"), with a model that has a target-group head.
TARGET_COUNTER_PREFIX = "targets_"
# Records labeled per way the worker came to its precision: "precision_choice:measured" (timed at its
# load), "reused" (a calibration stored by an earlier load), "given" (--precision), "device" (fixed by it).
PRECISION_CHOICE_PREFIX = "precision_choice:"
# Local devices of the workers' models, per platform (a gauge: "devices:cpu" = 4).
DEVICES_GAUGE_PREFIX = "devices:"
# RunInference's own latency distribution, reported into NAMESPACE by the model handler.
BATCH_LATENCY = "inference_batch_latency_micro_secs"


def shard_pattern(name: str) -> str:
    """The file pattern, relative to the output directory, of the Parquet shards named ``name``."""
    return f"{name}-*.parquet"
