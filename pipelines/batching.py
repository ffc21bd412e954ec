"""Batching windows by length into the model's static shape grid.

XLA compiles one program per input shape, so every batch must have a shape
from the model's grid: a length bucket (``flaxmodel.predictor.length_buckets``)
times a row bucket (``batch_buckets``).  ``BatchByLength`` buffers tokenized
records within a bundle (up to ``buffer_windows`` windows), sorts them by
length and cuts them with the predictor's own planner
(:func:`flaxmodel.predictor.plan_batches`): the cuts of least estimated cost
(FLOPs with padding, plus a per-call overhead) within at most ``batch_size``
rows and a budget of padded tokens per batch (on CPU workers by default the
cache-sized :data:`~flaxmodel.predictor.CPU_BATCH_TOKENS`).  All windows of
one record go into the same batch, so the record's scores can be aggregated
right after inference, without a shuffle.  Padded versus real tokens are
exported as metrics (the padding ratio).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from flaxmodel import predictor
from flaxmodel.config import EncoderConfig
from pipelines.metrics import NAMESPACE
from pipelines.options import OptionError
from pipelines.tokenizing import Tokenized


class Batch(NamedTuple):
    """Records whose windows fill one ``[rows, length]`` padded model input."""

    items: tuple[Tokenized, ...]
    rows: int
    length: int

    @property
    def num_windows(self) -> int:
        return sum(len(item.windows) for item in self.items)


@dataclasses.dataclass(frozen=True)
class BatchGrid:
    """The static shapes a batch may take, their estimated costs, and the token budget of a batch.

    ``max_tokens`` 0 leaves the budget to the worker's backend
    (:func:`flaxmodel.predictor.default_max_cells`), known only where it runs.
    """

    length_buckets: tuple[int, ...]
    row_buckets: tuple[int, ...]
    costs: Mapping[tuple[int, int], float]
    max_tokens: int = 0

    @classmethod
    def for_model(cls, config: EncoderConfig, max_length: int, batch_size: int, max_tokens: int = 0) -> "BatchGrid":
        lengths, rows = predictor.length_buckets(max_length), predictor.batch_buckets(batch_size)
        return cls(lengths, rows, predictor.batch_costs(config, lengths, rows), max_tokens)

    @property
    def max_rows(self) -> int:
        return self.row_buckets[-1]

    def check_record_fits(self, max_windows: int) -> None:
        """Raises :class:`OptionError` unless a record's ``max_windows`` windows fit the rows of one batch."""
        if max_windows > self.max_rows:
            raise OptionError(
                f"a record may have --max_windows {max_windows} windows, more than the {self.max_rows} rows of "
                "one batch (--batch_size); lower --max_windows or raise --batch_size"
            )


def plan_batches(
    window_lengths: Sequence[Sequence[int]], grid: BatchGrid, max_cells: int | None = None
) -> list[tuple[list[int], int, int]]:
    """Groups records into batches: ``[(record indices, padded rows, padded length), ...]``.

    Records are sorted by their longest window and cut where
    :func:`flaxmodel.predictor.plan_batches` finds the least total cost; a batch
    of several records stays within ``max_cells`` padded tokens (one record
    always makes a batch of its own, see :meth:`BatchGrid.check_record_fits`).
    """
    order = sorted(range(len(window_lengths)), key=lambda i: (max(window_lengths[i]), i))
    plan = predictor.plan_batches(
        [max(window_lengths[i]) for i in order],
        grid.length_buckets,
        grid.row_buckets,
        grid.costs,
        sizes=[len(window_lengths[i]) for i in order],
        max_cells=max_cells,
    )
    return [(order[start:end], rows, length) for start, end, rows, length in plan]


class BatchByLength(beam.DoFn):
    """Tokenized records in, :class:`Batch` elements out (global window, batch pipelines)."""

    def __init__(self, grid: BatchGrid, buffer_windows: int):
        self._grid = grid
        self._buffer_windows = buffer_windows

    def setup(self) -> None:
        self._max_cells = self._grid.max_tokens or predictor.default_max_cells()
        self._metrics = {
            name: Metrics.counter(NAMESPACE, name) for name in ("batches", "windows", "tokens", "padded_tokens")
        }

    def start_bundle(self) -> None:
        self._buffer: list[Tokenized] = []
        self._buffered = 0

    def process(self, item: Tokenized):
        self._buffer.append(item)
        self._buffered += len(item.windows)
        if self._buffered >= self._buffer_windows:
            yield from self._flush()

    def finish_bundle(self):
        for batch in self._flush():
            yield GlobalWindows.windowed_value(batch)

    def _flush(self) -> list[Batch]:
        # Sorting by id first makes the batches a function of the buffer's content, not its arrival order.
        items = sorted(self._buffer, key=lambda item: item.record.id)
        self._buffer, self._buffered = [], 0
        batches = []
        for members, rows, length in plan_batches(
            [[len(w) for w in item.windows] for item in items], self._grid, self._max_cells
        ):
            batch = Batch(tuple(items[i] for i in members), rows, length)
            self._metrics["batches"].inc()
            self._metrics["windows"].inc(batch.num_windows)
            self._metrics["tokens"].inc(sum(len(w) for item in batch.items for w in item.windows))
            self._metrics["padded_tokens"].inc(rows * length)
            batches.append(batch)
        return batches
