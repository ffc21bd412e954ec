"""Tokenizing records into model windows, once-per-worker tokenizer, batched calls.

``TokenizeRecords`` turns each :class:`~pipelines.records.Record` into a
:class:`Tokenized` item: the token ids of its windows (a text longer than the
model's maximum length is split into windows overlapping by ``stride``; past
``max_windows`` the rest is dropped and ``truncated`` set).  Only the prefix of
a text that those windows can use is tokenized (see
:meth:`~flaxmodel.inference.tokenizer.TextEncoder.encode_windows`), so one huge
record costs about what a record of ``max_windows`` windows does.  The tokenizer is
loaded once per worker process and shared by its threads (Beam's ``Shared``),
and texts are encoded a chunk at a time because one ``encode_batch`` call over
many texts is several times faster than as many single calls.

Like the batching step, it buffers within a bundle and so assumes the global
window (a batch pipeline).
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils import shared

from flaxmodel import TextEncoder, default_model_path
from pipelines.metrics import NAMESPACE
from pipelines.records import Record

# Texts per encode_batch call: large enough to amortise the call, small enough to stream.
_CHUNK = 256


class Tokenized(NamedTuple):
    """A record's windows of token ids.

    ``num_tokens`` counts its tokens, special tokens of one window included; for
    a ``truncated`` record, those of the prefix that was tokenized, not of the
    whole text.
    """

    record: Record
    windows: list[list[int]]
    num_tokens: int
    truncated: bool


class _SharedEncoder:
    """Weak-referenceable holder, as ``Shared`` requires."""

    def __init__(self, encoder: TextEncoder):
        self.encoder = encoder


class TokenizeRecords(beam.DoFn):
    def __init__(self, model_path: str | None, max_length: int, stride: int, max_windows: int):
        self._model_path = model_path
        self._max_length = max_length
        self._stride = stride
        self._max_windows = max_windows
        self._shared = shared.Shared()

    def setup(self) -> None:
        path = self._model_path or default_model_path()
        self._holder = self._shared.acquire(
            lambda: _SharedEncoder(TextEncoder.from_folder(path, self._max_length)),
            tag=f"tokenizer:{path}:{self._max_length}",
        )
        self._truncated = Metrics.counter(NAMESPACE, "truncated")

    def start_bundle(self) -> None:
        self._buffer: list[Record] = []

    def process(self, record: Record):
        self._buffer.append(record)
        if len(self._buffer) >= _CHUNK:
            yield from self._flush()

    def finish_bundle(self):
        for item in self._flush():
            yield GlobalWindows.windowed_value(item)

    def _flush(self) -> list[Tokenized]:
        records, self._buffer = self._buffer, []
        if not records:
            return []
        encoded = self._holder.encoder.encode_windows([r.text for r in records], self._stride, self._max_windows)
        out = []
        for record, windows in zip(records, encoded):
            if windows.truncated:
                self._truncated.inc()
            out.append(Tokenized(record, windows.ids, windows.num_tokens, windows.truncated))
        return out
