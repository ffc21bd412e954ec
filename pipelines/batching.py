"""Batching windows by length into the model's static shape grid.

XLA compiles one program per input shape, so every batch must have a shape
from the model's :class:`flaxmodel.ShapeGrid` (a length bucket times a row
bucket).  ``BatchByLength`` buffers tokenized records within a bundle (up to
``buffer_windows`` windows), sorts them by length and cuts them with the
grid's own planner, the one the predictor and training use: the cuts of least
estimated cost (FLOPs with padding, plus a per-call overhead) within at most
``batch_size`` rows and a budget of padded tokens per batch (on CPU workers by
default cache-sized).  All windows of one record go into the same batch, so the record's scores can be aggregated
right after inference, without a shuffle.  Padded versus real tokens are
exported as metrics (the padding ratio).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from flaxmodel import ShapeGrid
from pipelines.metrics import NAMESPACE
from pipelines.tokenizing import Tokenized


class Batch(NamedTuple):
    """Records whose windows fill one ``[rows, length]`` padded model input."""

    items: tuple[Tokenized, ...]
    rows: int
    length: int

    @property
    def num_windows(self) -> int:
        return sum(len(item.windows) for item in self.items)


def plan_record_batches(window_lengths: Sequence[Sequence[int]], grid: ShapeGrid) -> list[tuple[list[int], int, int]]:
    """Groups records into batches: ``[(record indices, padded rows, padded length), ...]``.

    Records are sorted by their longest window and cut where the grid's planner
    finds the least total cost, each record's windows kept in one batch; a
    batch of several records stays within the grid's token budget (one record
    always fits a batch of its own: ``--max_windows`` is checked against
    ``--batch_size`` at launch).
    """
    order = sorted(range(len(window_lengths)), key=lambda i: (max(window_lengths[i]), i))
    plan = grid.plan([max(window_lengths[i]) for i in order], sizes=[len(window_lengths[i]) for i in order])
    return [(order[start:end], rows, length) for start, end, rows, length in plan]


class BatchByLength(beam.DoFn):
    """Tokenized records in, :class:`Batch` elements out (global window, batch pipelines)."""

    def __init__(self, grid: ShapeGrid, buffer_windows: int):
        self._grid = grid
        self._buffer_windows = buffer_windows

    def setup(self) -> None:
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
        for members, rows, length in plan_record_batches([[len(w) for w in item.windows] for item in items], self._grid):
            batch = Batch(tuple(items[i] for i in members), rows, length)
            self._metrics["batches"].inc()
            self._metrics["windows"].inc(batch.num_windows)
            self._metrics["tokens"].inc(sum(len(w) for item in batch.items for w in item.windows))
            self._metrics["padded_tokens"].inc(rows * length)
            batches.append(batch)
        return batches
