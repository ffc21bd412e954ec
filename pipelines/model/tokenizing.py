"""Tokenizing record blocks into model windows: once-per-worker tokenizer, identical texts once.

``TokenizeBlocks`` turns each :class:`~flaxmodel.records.RecordBlock` into a
:class:`TokenizedBlock`: the token windows of the block's distinct texts (a
text longer than the model's maximum length is split into windows overlapping
by ``stride``; past ``max_windows`` the rest is dropped and ``truncated`` set),
and for each record which of those texts it holds.  Identical texts within a
block (retweets, copy-pasted spam, bot floods) are tokenized, and later scored,
once; every record still gets its own row, filled from that one result, and
the ``reused_texts`` metric counts the records that reused another's.  Only the
prefix of a text that its windows can use is tokenized (see
:meth:`~flaxmodel.inference.tokenizer.Tokenizer.encode_block`), so one huge
record costs about what a record of ``max_windows`` windows does.  The tokenizer
is the model's (:meth:`flaxmodel.ModelRef.tokenizer`): built once per worker
process and shared by its threads and by the process's classifier, and each
block is one batched call of the tokenizer.

The tokenizer call of a block runs on a thread of its own while the rest of
the pipeline (planning, padding, dispatch, aggregation, writing: Python on the
main thread) handles the block before it: the tokenizer releases the GIL, so
the two overlap.  One block is held back this way and emitted with the next
one, or at the end of the bundle (``benchmarks/README.md``, host feed, has what
the overlap gained).
"""

from __future__ import annotations

import concurrent.futures
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from flaxmodel import ModelRef, TokenWindows
from pipelines.names import NAMESPACE
from flaxmodel.records import RecordBlock


class TokenizedBlock(NamedTuple):
    """A block's records and the windows of its distinct texts.

    Attributes:
      records: the block.
      text_of: int64 ``[records]``, the distinct text each record holds (an index into ``windows``' texts).
      windows: the windows of the distinct texts, in order of first appearance.
    """

    records: RecordBlock
    text_of: np.ndarray
    windows: TokenWindows


def distinct_texts(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct texts in order of first appearance, and int64 ``[len(texts)]`` indices into them."""
    index: dict[str, int] = {}
    text_of = np.fromiter((index.setdefault(text, len(index)) for text in texts), np.int64, len(texts))
    return list(index), text_of


class TokenizeBlocks(beam.DoFn):
    """:class:`~flaxmodel.records.RecordBlock` in, :class:`TokenizedBlock` out, one block behind (see the module
    docstring)."""

    def __init__(self, model: ModelRef, stride: int, max_windows: int):
        self._model = model
        self._stride = stride
        self._max_windows = max_windows

    def setup(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tokenize")
        self._tokenizer = self._model.tokenizer()
        self._truncated = Metrics.counter(NAMESPACE, "truncated")
        self._reused = Metrics.counter(NAMESPACE, "reused_texts")

    def start_bundle(self) -> None:
        self._pending: tuple[concurrent.futures.Future, WindowedValue] | None = None

    def process(self, block: RecordBlock, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        pending = self._pending
        self._pending = (
            self._executor.submit(self._tokenize, block),
            WindowedValue(None, timestamp, (window,)),
        )
        if pending is not None:
            yield self._emit(*pending)

    def finish_bundle(self):
        if self._pending is not None:
            pending, self._pending = self._pending, None
            yield self._emit(*pending)

    def teardown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _tokenize(self, block: RecordBlock) -> TokenizedBlock:
        texts, text_of = distinct_texts(block.texts)
        return TokenizedBlock(block, text_of, self._tokenizer.encode_block(texts, self._stride, self._max_windows))

    def _emit(self, future: concurrent.futures.Future, where: WindowedValue) -> WindowedValue:
        """The finished block, in its own window; counted here, since Beam's metrics belong to the bundle's thread."""
        tokenized: TokenizedBlock = future.result()
        self._truncated.inc(int(tokenized.windows.truncated[tokenized.text_of].sum()))
        self._reused.inc(len(tokenized.records) - len(tokenized.windows.num_tokens))
        return where.with_value(tokenized)
