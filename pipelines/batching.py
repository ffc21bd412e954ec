"""Batching windows by length into the model's static shape grid.

XLA compiles one program per input shape, so every batch must have a shape
from the model's grid: a length bucket (``flaxmodel.predictor.length_buckets``)
times a row bucket (``batch_buckets``).  ``BatchByLength`` buffers tokenized
records within a bundle (up to ``buffer_windows`` windows), sorts them by
length so each batch wastes little padding, and cuts batches greedily under
two limits: at most ``batch_size`` rows, and at most ``max_tokens`` cells in
the *padded* batch.  All windows of one record go into the same batch, so the
record's scores can be aggregated right after inference, without a shuffle.
Padded versus real tokens are exported as metrics (the padding ratio).
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import NamedTuple, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from flaxmodel.predictor import batch_buckets, length_buckets
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
    """The static shapes a batch may take and the token budget of one batch."""

    length_buckets: tuple[int, ...]
    row_buckets: tuple[int, ...]
    max_tokens: int

    @classmethod
    def for_model(cls, max_length: int, batch_size: int, max_tokens: int) -> "BatchGrid":
        return cls(length_buckets(max_length), batch_buckets(batch_size), max_tokens)

    @property
    def max_rows(self) -> int:
        return self.row_buckets[-1]

    def bucket_length(self, length: int) -> int:
        return self.length_buckets[bisect.bisect_left(self.length_buckets, length)]

    def bucket_rows(self, rows: int) -> int:
        return self.row_buckets[bisect.bisect_left(self.row_buckets, rows)]

    def fits(self, rows: int, length: int) -> bool:
        return rows <= self.max_rows and self.bucket_rows(rows) * length <= self.max_tokens

    def check_record_fits(self, max_windows: int) -> None:
        """Raises :class:`OptionError` unless a record with ``max_windows`` full windows fits one batch."""
        longest = self.length_buckets[-1]
        if not self.fits(max_windows, longest):
            raise OptionError(
                f"a record may have --max_windows {max_windows} windows of {longest} tokens, which do not fit one "
                f"batch of --batch_size {self.max_rows} rows and --max_batch_tokens {self.max_tokens} (padded to "
                f"{self.bucket_rows(min(max_windows, self.max_rows))} x {longest}); lower --max_windows or raise "
                "--batch_size / --max_batch_tokens"
            )


def plan_batches(window_lengths: Sequence[Sequence[int]], grid: BatchGrid) -> list[tuple[list[int], int, int]]:
    """Groups records into batches: ``[(record indices, padded rows, padded length), ...]``.

    Records are taken shortest first (by their longest window) and added to the
    current batch while its padded shape stays within the grid's limits.  Every
    record must fit a batch on its own (see :meth:`BatchGrid.check_record_fits`).
    """
    order = sorted(range(len(window_lengths)), key=lambda i: (max(window_lengths[i]), i))
    plans: list[tuple[list[int], int, int]] = []
    members: list[int] = []
    rows = length = 0
    for i in order:
        n, need = len(window_lengths[i]), grid.bucket_length(max(window_lengths[i]))
        if not grid.fits(n, need):
            raise ValueError(f"a record of {n} windows of up to {need} tokens does not fit one batch")
        if members and not grid.fits(rows + n, max(length, need)):
            plans.append((members, grid.bucket_rows(rows), length))
            members, rows, length = [], 0, 0
        members.append(i)
        rows += n
        length = max(length, need)
    if members:
        plans.append((members, grid.bucket_rows(rows), length))
    return plans


class BatchByLength(beam.DoFn):
    """Tokenized records in, :class:`Batch` elements out (global window, batch pipelines)."""

    def __init__(self, grid: BatchGrid, buffer_windows: int):
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
        for members, rows, length in plan_batches([[len(w) for w in item.windows] for item in items], self._grid):
            batch = Batch(tuple(items[i] for i in members), rows, length)
            self._metrics["batches"].inc()
            self._metrics["windows"].inc(batch.num_windows)
            self._metrics["tokens"].inc(sum(len(w) for item in batch.items for w in item.windows))
            self._metrics["padded_tokens"].inc(rows * length)
            batches.append(batch)
        return batches
