"""Classifying records: tokenize into windows, batch by length, RunInference, aggregate.

:class:`ClassifyRecords` is the reusable composite: records in,
``(scored, dead_letters)`` out.  Each :class:`Scored` item holds the record,
its per-class scores aggregated over its windows (max per class by default,
or the mean), the argmax label, and token/window counts.  A batch the model
fails on becomes one ``inference_error`` dead letter per record in it.  The
model is inspected at construction, so a bad checkpoint or a flag combination
that cannot work fails before any data is read.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult, RunInference

from pipelines import records as R
from flaxmodel import ShapeGrid
from pipelines.batching import Batch, BatchByLength
from pipelines.handler import FlaxModelHandler, ModelSpec, inspect_model
from pipelines.metrics import NAMESPACE
from pipelines.options import AGGREGATIONS, ClassifySettings, OptionError
from pipelines.tokenizing import TokenizeRecords


class Scored(NamedTuple):
    record: R.Record
    scores: np.ndarray
    label: str
    num_tokens: int
    num_windows: int
    truncated: bool
    model: str


def aggregate_windows(probabilities: np.ndarray, how: str) -> np.ndarray:
    """Per-class scores of a record from its windows' ``[windows, labels]`` probabilities."""
    if how == "max":
        return probabilities.max(axis=0)
    if how == "mean":
        return probabilities.mean(axis=0)
    raise ValueError(f"unknown aggregation {how!r}; use one of {AGGREGATIONS}")


def _check(settings: ClassifySettings, spec: ModelSpec) -> ShapeGrid:
    if settings.aggregate not in AGGREGATIONS:
        raise OptionError(f"--aggregate {settings.aggregate}: use one of {', '.join(AGGREGATIONS)}")
    if not 0 <= settings.stride < spec.content_length:
        raise OptionError(
            f"--stride {settings.stride}: must be at least 0 and below the {spec.content_length} text tokens "
            f"of a {spec.max_length}-token window"
        )
    if settings.max_windows < 1:
        raise OptionError("--max_windows must be at least 1")
    if settings.batch_size < 1:
        raise OptionError("--batch_size must be at least 1")
    if settings.sort_buffer < 1:
        raise OptionError("--sort_buffer must be at least 1")
    if settings.max_batch_tokens < 0:
        raise OptionError("--max_batch_tokens must be 0 (automatic) or positive")
    grid = ShapeGrid.for_model(spec.config, spec.max_length, settings.batch_size, settings.max_batch_tokens)
    if settings.max_windows > grid.max_rows:
        # A record's windows share one batch, so they must fit its rows.
        raise OptionError(
            f"a record may have --max_windows {settings.max_windows} windows, more than the {grid.max_rows} rows of "
            "one batch (--batch_size); lower --max_windows or raise --batch_size"
        )
    return grid


class _ScoreRecords(beam.DoFn):
    """Splits a batch's window probabilities back into records and aggregates them."""

    def __init__(self, labels: tuple[str, ...], aggregate: str):
        self._labels = labels
        self._aggregate = aggregate

    def setup(self) -> None:
        self._labeled = Metrics.counter(NAMESPACE, "labeled")
        self._per_label = {name: Metrics.counter(NAMESPACE, f"label_{name}") for name in self._labels}

    def process(self, result: PredictionResult) -> Iterable[Scored]:
        batch: Batch = result.example
        start = 0
        for item in batch.items:
            n = len(item.windows)
            scores = aggregate_windows(np.asarray(result.inference[start : start + n], dtype=np.float32), self._aggregate)
            start += n
            label = self._labels[int(scores.argmax())]
            self._labeled.inc()
            self._per_label[label].inc()
            yield Scored(item.record, scores, label, item.num_tokens, n, item.truncated, result.model_id)


def _failed_batch(failure, max_payload_bytes: int) -> Iterable[R.DeadLetter]:
    """RunInference's ``(elements, (error type, error repr, traceback))`` -> one dead letter per record."""
    elements, (_, detail, _) = failure
    for batch in elements:
        for item in batch.items:
            record = item.record
            yield R.dead_letter(
                record.source, record.position, R.INFERENCE_ERROR, record.text.encode("utf-8"), detail, max_payload_bytes
            )


class ClassifyRecords(beam.PTransform):
    """Records -> ``(scored, dead_letters)``; see the module docstring."""

    def __init__(self, settings: ClassifySettings, spec: ModelSpec | None = None):
        super().__init__()
        self.settings = settings
        self.spec = spec or inspect_model(settings.model, max_length=settings.max_length, dtype=settings.dtype)
        self.grid = _check(settings, self.spec)

    @classmethod
    def from_options(cls, options) -> "ClassifyRecords":
        return cls(ClassifySettings.from_options(options))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def expand(self, records):
        s = self.settings
        handler = FlaxModelHandler(
            s.model,
            max_length=self.spec.max_length,
            batch_size=s.batch_size,
            dtype=s.dtype,
            compilation_cache_dir=s.compilation_cache_dir,
        )
        results, failures = (
            records
            | "Tokenize" >> beam.ParDo(TokenizeRecords(s.model, self.spec.max_length, s.stride, s.max_windows))
            | "BatchByLength" >> beam.ParDo(BatchByLength(self.grid, s.sort_buffer))
            | "Infer" >> RunInference(handler).with_exception_handling()
        )
        scored = results | "Aggregate" >> beam.ParDo(_ScoreRecords(self.spec.labels, s.aggregate))
        failed = failures.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch, s.max_payload_bytes)
        return scored, failed
