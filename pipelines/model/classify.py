"""Classifying record blocks: tokenize into windows, RunInference, aggregate, all a block at a time.

:class:`ClassifyRecords` is the reusable composite: record blocks in,
``(scored, dead_letters)`` out.  Each :class:`ScoredBlock` holds the labeled
records of a block as columns: per-class scores aggregated over each record's
windows (max per class by default, or the mean), the argmax label, and
token/window counts.  A batch the model fails on becomes one
``inference_error`` dead letter per record in it.  The model is resolved at
construction (:func:`flaxmodel.resolve_model`, files only), so a bad checkpoint
or a flag combination that cannot work fails before any data is read.

Design: the elements are blocks of thousands of records from read to write
(batches as elements), rather than single records handed to Beam's batched
DoFns (``process_batch``).  Beam's batched DoFns still buffer and convert
per element at every boundary between a per-element and a batched DoFn, and
their batches are cut by the runner, not by what a step needs; as elements,
one block is one pyarrow decode, one tokenizer call, one batch plan and one
output table, each step's per-call costs amortised over thousands of records,
and no step depends on bundle sizes (the record-at-a-time path cut batches at
bundle ends, which on the DirectRunner left them a third full).  Blocks never
cross records of two files, so a record keeps its file and position for dead
letters; windows of one text never cross batches, so aggregation needs no
shuffle.
"""

from __future__ import annotations

import logging
from typing import Iterable, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult, RunInference

from flaxmodel import ModelRef, OptionError, grid_for, resolve_model
import flaxmodel.records as R
from pipelines.model.handler import FlaxModelHandler, RunSettings, WindowScores
from pipelines.model.tokenizing import TokenizedBlock, TokenizeBlocks
from pipelines.names import DEAD_LETTER_TAG, MODEL_COUNTER_PREFIX, NAMESPACE, TARGET_COUNTER_PREFIX
from pipelines.options import AGGREGATIONS, ClassifySettings

_LOG = logging.getLogger(__name__)


class ScoredBlock(NamedTuple):
    """The labeled records of a block, as columns.

    Attributes:
      records: the records (``n``).
      scores: float32 ``[n, labels]``, aggregated over each record's windows.
      label: int64 ``[n]``, the argmax class of each record.
      target_scores: float32 ``[n, targets]``, the target head's scores aggregated the same
        way (no columns for a model without a target head).
      num_tokens, num_windows: int32 ``[n]``.
      truncated: bool ``[n]``.
      model: the ``model`` column's value.
    """

    records: R.RecordBlock
    scores: np.ndarray
    label: np.ndarray
    target_scores: np.ndarray
    num_tokens: np.ndarray
    num_windows: np.ndarray
    truncated: np.ndarray
    model: str

    def take(self, rows: np.ndarray) -> "ScoredBlock":
        """The block of the records at ``rows`` (indices), in that order."""
        columns = (self.scores, self.label, self.target_scores, self.num_tokens, self.num_windows, self.truncated)
        return ScoredBlock(self.records.take(rows), *(c[rows] for c in columns), self.model)


def aggregate_windows(probabilities: np.ndarray, window_offsets: np.ndarray, how: str) -> np.ndarray:
    """Per-text scores ``[texts, outputs]`` from window scores ``[windows, outputs]``.

    Text ``i``'s windows are ``window_offsets[i]:window_offsets[i + 1]`` (at least one each);
    ``how`` is ``max`` (per column: a text attacks a group if any of its windows does) or ``mean``.
    """
    starts = window_offsets[:-1]
    if how == "max":
        return np.maximum.reduceat(probabilities, starts, axis=0)
    if how == "mean":
        return np.add.reduceat(probabilities, starts, axis=0) / np.diff(window_offsets)[:, None].astype(np.float32)
    raise ValueError(f"unknown aggregation {how!r}; use one of {AGGREGATIONS}")


def _check(settings: ClassifySettings, model: ModelRef) -> None:
    if settings.aggregate not in AGGREGATIONS:
        raise OptionError(f"--aggregate {settings.aggregate}: use one of {', '.join(AGGREGATIONS)}")
    if not 0 <= settings.stride < model.content_length:
        raise OptionError(
            f"--stride {settings.stride}: must be at least 0 and below the {model.content_length} text tokens "
            f"of a {model.max_length}-token window"
        )
    if settings.max_windows < 1:
        raise OptionError("--max_windows must be at least 1")
    if settings.batch_size < 0:
        raise OptionError("--batch_size must be 0 (automatic) or positive")
    if settings.sort_buffer < 1:
        raise OptionError("--sort_buffer must be at least 1")
    if settings.max_batch_tokens < 0:
        raise OptionError("--max_batch_tokens must be 0 (automatic) or positive")
    # The smallest grid any worker may use: the CPU one when the rows are automatic.
    grid = grid_for(model.config, model.max_length, "cpu", batch_size=settings.batch_size)
    if settings.max_windows > grid.max_rows:
        # A record's windows share one batch, so they must fit its rows.
        raise OptionError(
            f"a record may have --max_windows {settings.max_windows} windows, more than the {grid.max_rows} rows of "
            "one batch (--batch_size); lower --max_windows or raise --batch_size"
        )


class _ScoreBlocks(beam.DoFn):
    """Aggregates a block's window scores into its records' scores; failed records to dead letters."""

    def __init__(
        self, labels: tuple[str, ...], aggregate: str, max_payload_bytes: int, targets: tuple[tuple[str, float], ...] = ()
    ):
        self._labels = labels
        self._aggregate = aggregate
        self._max_payload_bytes = max_payload_bytes
        self._targets = targets

    def setup(self) -> None:
        names = ("labeled", "batches", "windows", "tokens", "padded_tokens")
        self._counters = {name: Metrics.counter(NAMESPACE, name) for name in names}
        self._per_label = [Metrics.counter(NAMESPACE, f"label_{name}") for name in self._labels]
        self._per_target = [Metrics.counter(NAMESPACE, TARGET_COUNTER_PREFIX + name) for name, _ in self._targets]
        self._target_thresholds = np.asarray([t for _, t in self._targets], np.float32)
        self._per_model: dict[str, Metrics.DelegatingCounter] = {}

    def process(self, result: PredictionResult) -> Iterable:
        tokenized: TokenizedBlock = result.example
        inference: WindowScores = result.inference
        windows = tokenized.windows
        self._counters["batches"].inc(inference.batches)
        self._counters["windows"].inc(len(windows.window_length))
        self._counters["tokens"].inc(inference.tokens)
        self._counters["padded_tokens"].inc(inference.padded_tokens)
        text_scores = aggregate_windows(inference.probabilities, windows.window_offsets, self._aggregate)
        text_error = np.maximum.reduceat(inference.error_of_window, windows.window_offsets[:-1])
        record_error = text_error[tokenized.text_of]
        records = tokenized.records
        for i in np.flatnonzero(record_error >= 0).tolist():
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG,
                R.dead_letter(
                    records.source,
                    int(records.positions[i]),
                    R.INFERENCE_ERROR,
                    records.texts[i].encode("utf-8"),
                    inference.errors[record_error[i]],
                    self._max_payload_bytes,
                ),
            )
        ok = np.flatnonzero(record_error < 0)
        if not len(ok):
            return
        text_of = tokenized.text_of[ok]
        scores = text_scores[text_of, : len(self._labels)]
        label = scores.argmax(axis=1)
        self._counters["labeled"].inc(len(ok))
        if result.model_id not in self._per_model:
            self._per_model[result.model_id] = Metrics.counter(NAMESPACE, MODEL_COUNTER_PREFIX + result.model_id)
        self._per_model[result.model_id].inc(len(ok))
        for index, count in enumerate(np.bincount(label, minlength=len(self._labels)).tolist()):
            if count:
                self._per_label[index].inc(count)
        target_scores = text_scores[text_of, len(self._labels) :]
        for counter, count in zip(self._per_target, (target_scores >= self._target_thresholds).sum(axis=0).tolist()):
            if count:
                counter.inc(count)
        yield ScoredBlock(
            records if len(ok) == len(records) else records.take(ok),
            scores,
            label,
            target_scores,
            windows.num_tokens[text_of],
            windows.windows_per_text[text_of].astype(np.int32),
            windows.truncated[text_of],
            result.model_id,
        )


def _failed_block(failure, max_payload_bytes: int) -> Iterable[R.DeadLetter]:
    """RunInference's ``(elements, (error type, error repr, traceback))`` -> one dead letter per record."""
    elements, (_, detail, _) = failure
    for tokenized in elements:
        records = tokenized.records
        for position, text in zip(records.positions.tolist(), records.texts):
            yield R.dead_letter(
                records.source, position, R.INFERENCE_ERROR, text.encode("utf-8"), detail, max_payload_bytes
            )


class ClassifyRecords(beam.PTransform):
    """Record blocks -> ``(scored blocks, dead_letters)``; see the module docstring."""

    def __init__(self, settings: ClassifySettings, model: ModelRef | None = None):
        super().__init__()
        self.settings = settings
        self.model = model or resolve_model(settings.model, max_length=settings.max_length)
        _check(settings, self.model)
        if self.model.research_only:
            _LOG.warning(
                "%s is a research model (its training_data.json says use 'research'): its training data's "
                "licences allow research use only, so do not run it commercially or redistribute it (its README.md)",
                self.model.path,
            )

    @classmethod
    def from_options(cls, options) -> "ClassifyRecords":
        return cls(ClassifySettings.from_options(options))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.labels

    def expand(self, blocks):
        s = self.settings
        run = RunSettings(
            batch_size=s.batch_size,
            max_batch_tokens=s.max_batch_tokens,
            sort_buffer=s.sort_buffer,
            precision=s.precision,
            compilation_cache_dir=s.compilation_cache_dir,
            calibration_cache_dir=s.calibration_cache_dir,
            model_copies=s.model_copies,
        )
        results, failures = (
            blocks
            | "Tokenize" >> beam.ParDo(TokenizeBlocks(self.model, s.stride, s.max_windows))
            | "Infer" >> RunInference(FlaxModelHandler(self.model, run)).with_exception_handling()
        )
        scored = results | "Aggregate" >> beam.ParDo(
            _ScoreBlocks(self.model.labels, s.aggregate, s.max_payload_bytes, self.model.target_thresholds)
        ).with_outputs(DEAD_LETTER_TAG, main="scored")
        failed = failures.failed_inferences | "FailedBlocks" >> beam.FlatMap(_failed_block, s.max_payload_bytes)
        dead = (scored[DEAD_LETTER_TAG], failed) | "InferenceDeadLetters" >> beam.Flatten()
        return scored.scored, dead
