"""The one definition of every name the pipelines' steps share: output files, tagged outputs, metrics.

Everything that a reader of the outputs, a dashboard over the Beam metrics or
another step matches by name is spelled here once.
"""

from __future__ import annotations

# Output file name prefixes: DIR/labels-*.parquet and DIR/dead_letter-*.parquet.
LABELS_NAME = "labels"
DEAD_LETTER_NAME = "dead_letter"
# Each run writes under DIR/_attempt-<id>/ until its outputs are complete, then moves them into DIR
# (pipelines.sinks.commit).  `*` in a Beam or shell glob never crosses a `/`, and the leading underscore
# hides the folder from readers that skip such names (Spark, Hive, pyarrow datasets).
ATTEMPT_PREFIX = "_attempt-"
# The evaluation job's outputs besides its dead letters.
REPORT_FILE = "report.json"
CONFUSION_PNG = "confusion_matrix.png"

# The tagged output every step sends its dead letters to.
DEAD_LETTER_TAG = "dead_letter"

# Every counter, gauge and distribution of the jobs lives in this Beam metrics namespace.
NAMESPACE = "moderation"
# Records labeled by each model identity (name@hash:precision), as the worker that ran it names it.
MODEL_COUNTER_PREFIX = "model:"
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
