"""The one shape grid, batch planner and padding routine, for inference and training alike.

XLA compiles one program per input shape, so every batch is padded up to a
(rows, length) bucket of a small fixed grid: a run compiles at most once per
bucket however many texts it sees.  :class:`ShapeGrid` holds a model's grid,
the estimated cost of each shape and the budget of padded tokens per batch;
:func:`plan_batches` cuts length-sorted items into the grid shapes of least
total cost; :func:`pad_windows` is the only place token ids become padded
``[rows, length]`` arrays (:func:`pad_batch` is it for lists of sequences);
:func:`predict_in_batches` runs any padded-batch forward function over
sequences of any lengths and returns results in input order.  The predictor,
the training loop and the pipelines' batching all go through these, so they
agree on shapes by construction.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from typing import Callable, Mapping, Sequence

import jax
import numpy as np

from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.model import forward_flops

# Tweets are short (median ~29 tokens, p90 ~52): steps of 4 up to 64, where
# padding decides the cost (6% padding on length-sorted tweets, against 11% with
# steps of 8), then coarser steps for the rare long texts.
DEFAULT_LENGTH_BUCKETS = (
    *range(8, 64, 4),
    *range(64, 128, 16),
    *range(128, 256, 32),
    *range(256, 513, 64),
)
# One call costs about as much as this many more tokens (dispatch and the lower
# efficiency of tiny matmuls: ~2-3 ms for MiniLM on 2 CPU cores); it keeps the
# batch planner from cutting a batch in two to save a couple of padded tokens.
CALL_OVERHEAD_TOKENS = 32
# On CPU a batch runs fastest per token while its activations stay in cache: on
# the 2-core benchmark machine MiniLM ran 16 x 48 batches at ~190 GFLOP/s, 64 x 48
# at ~170, 64 x 64 at ~150 and 64 x 128 at ~115 (8 x 128: ~170).  The planner
# keeps batches within this many padded tokens; accelerators get no cap.
CPU_BATCH_TOKENS = 1024


def length_buckets(max_length: int, candidates: Sequence[int] = DEFAULT_LENGTH_BUCKETS) -> tuple[int, ...]:
    return tuple(sorted({b for b in candidates if b < max_length} | {max_length}))


def batch_buckets(batch_size: int) -> tuple[int, ...]:
    """Powers of two from 8 up to the batch size: a short final batch costs at most 2x."""
    sizes = {batch_size}
    size = 8
    while size < batch_size:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def _bucket(value: int, buckets: Sequence[int]) -> int:
    i = bisect.bisect_left(buckets, value)
    if i == len(buckets):
        raise ValueError(f"{value} exceeds the largest bucket {buckets[-1]}")
    return buckets[i]


def plan_batches(
    lengths: Sequence[int],
    length_grid: Sequence[int],
    row_grid: Sequence[int],
    cost: Mapping[tuple[int, int], float],
    *,
    sizes: Sequence[int] | None = None,
    max_cells: int | None = None,
) -> list[tuple[int, int, int, int]]:
    """Cuts items of ascending ``lengths`` into consecutive batches of least total ``cost[rows, length]``.

    Item ``i`` takes ``sizes[i]`` rows (default 1: one sequence), all in the same
    batch, and ``lengths[i]`` is its longest row.  Returns ``(start, end, rows,
    length)`` per batch, ``rows`` and ``length`` taken from the grids; a batch may
    hold fewer rows than its bucket (filled with empty rows).  With
    ``max_cells``, a batch of more than one item stays within ``rows * length <=
    max_cells`` unless it has the fewest rows of the grid.  Dynamic programming
    over the cut points, O(n * len(row_grid) * log n): the best cost of a prefix
    never decreases with its length, so for each row bucket only the longest
    batch that fits it is a candidate.  The candidates' costs are computed with
    numpy for all cut points first (a block of 4096 texts on a 1024-row grid
    took 66 ms to plan with them computed in the loop, 32 us per text).
    """
    n = len(lengths)
    sizes = np.ones(n, np.int64) if sizes is None else np.asarray(sizes, np.int64)
    if len(sizes) != n:
        raise ValueError(f"{n} lengths but {len(sizes)} sizes")
    if n == 0:
        return []
    lengths = np.asarray(lengths, np.int64)
    if lengths.max() > length_grid[-1]:
        raise ValueError(f"{lengths.max()} exceeds the largest bucket {length_grid[-1]}")
    if sizes.max() > row_grid[-1]:
        raise ValueError(f"an item of {sizes.max()} rows exceeds the largest row bucket {row_grid[-1]}")
    # Every candidate batch of every end, computed for all ends at once: the DP loop below only adds and compares.
    prefix = np.concatenate([[0], np.cumsum(sizes)])
    ends = np.arange(1, n + 1)
    length_index = np.searchsorted(length_grid, lengths, "left")
    padded_length = np.asarray(length_grid)[length_index]
    cost_table = np.array([[cost[rows, length] for length in length_grid] for rows in row_grid])
    candidates = []
    for first in [np.searchsorted(prefix, prefix[1:] - rows, "left") for rows in row_grid] + [ends - 1]:
        first = np.minimum(first, ends - 1)
        row_index = np.searchsorted(row_grid, prefix[ends] - prefix[first], "left")
        rows = np.asarray(row_grid)[row_index]
        allowed = np.ones(n, bool)
        if max_cells is not None:
            allowed = ~((rows * padded_length > max_cells) & (rows > row_grid[0]) & (ends - first > 1))
        total = np.where(allowed, cost_table[row_index, length_index], math.inf)
        candidates.append((first.tolist(), total.tolist(), rows.tolist()))
    best = [0.0] + [math.inf] * n
    cut = [(0, 0)] * (n + 1)
    for end in range(1, n + 1):
        for first, total, rows in candidates:
            start = first[end - 1]
            value = best[start] + total[end - 1]
            if value < best[end]:
                best[end], cut[end] = value, (start, rows[end - 1])
    plan = []
    end = n
    while end > 0:
        start, rows = cut[end]
        plan.append((start, end, rows, int(padded_length[end - 1])))
        end = start
    return plan[::-1]


def batch_costs(
    config: EncoderConfig, length_grid: Sequence[int], row_grid: Sequence[int]
) -> dict[tuple[int, int], float]:
    """Estimated cost of each grid shape for :func:`plan_batches`: its FLOPs plus a per-call overhead."""
    overhead = CALL_OVERHEAD_TOKENS * forward_flops(config, 1, 1)
    return {
        (rows, length): forward_flops(config, rows, length) + overhead for rows in row_grid for length in length_grid
    }


def default_max_cells() -> int | None:
    """The planner's cap on padded tokens per batch for this process's backend: :data:`CPU_BATCH_TOKENS` on CPU."""
    return CPU_BATCH_TOKENS if jax.default_backend() == "cpu" else None


def pad_batch(sequences: Sequence[Sequence[int]], rows: int, length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads token id sequences into one batch (:func:`pad_windows` over them).

    Args:
      sequences: at most ``rows`` sequences of at most ``length`` ids each.
      rows, length: the batch shape, normally a bucket of the grid.
      pad_id: the model's padding token id.

    Returns:
      ``(input_ids, attention_mask)``, both int32 ``[rows, length]``; rows past
      ``len(sequences)`` are all padding, with a zero mask.
    """
    lengths = np.fromiter((len(seq) for seq in sequences), np.int64, len(sequences))
    starts = np.zeros(len(sequences), np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    tokens = np.fromiter(itertools.chain.from_iterable(sequences), np.int32, int(lengths.sum()))
    return pad_windows(tokens, starts, lengths, rows, length, pad_id)


def pad_windows(
    tokens: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    rows: int,
    length: int,
    pad_id: int,
    prefix: Sequence[int] = (),
    suffix: Sequence[int] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """The one padding routine: windows of a flat token array, framed by special tokens, right-padded.

    Args:
      tokens: int ``[total]``, the ids the windows are cut from.
      starts, lengths: int ``[n]``, each window's first index in ``tokens`` and its number of ids;
        ``n <= rows`` and ``len(prefix) + lengths + len(suffix) <= length``.
      rows, length: the batch shape, normally a bucket of the grid.
      pad_id: the model's padding token id.
      prefix, suffix: ids put before and after every window (e.g. ``[CLS]`` and ``[SEP]``).

    Returns:
      ``(input_ids, attention_mask)``, both int32 ``[rows, length]``; rows past
      ``n`` are all padding, with a zero mask.
    """
    n, before = len(starts), len(prefix)
    ids = np.full((rows, length), pad_id, dtype=np.int32)
    mask = np.zeros((rows, length), dtype=np.int32)
    if not n:
        return ids, mask
    lengths = np.asarray(lengths, np.int64)
    column = np.arange(length)
    used = column < (lengths + before + len(suffix))[:, None]
    mask[:n] = used
    content = (column >= before) & (column < (lengths + before)[:, None])
    source = np.asarray(starts, np.int64)[:, None] + (column - before)
    ids[:n][content] = tokens[source[content]]
    if before:
        ids[:n, :before] = prefix
    for j, token in enumerate(suffix):
        ids[np.arange(n), lengths + before + j] = token
    return ids, mask


@dataclasses.dataclass(frozen=True)
class ShapeGrid:
    """The static ``(rows, length)`` shapes batches of one model take, their costs and the token budget.

    ``max_tokens`` caps the padded tokens of a batch of several items; 0 leaves
    it to the backend of the process that plans (:func:`default_max_cells`),
    which a pipeline knows only on its workers.
    """

    length_buckets: tuple[int, ...]
    row_buckets: tuple[int, ...]
    costs: Mapping[tuple[int, int], float]
    max_tokens: int = 0

    @classmethod
    def for_model(cls, config: EncoderConfig, max_length: int, batch_size: int, max_tokens: int = 0) -> "ShapeGrid":
        """The grid of ``config``'s model for windows of ``max_length`` tokens and at most ``batch_size`` rows."""
        lengths, rows = length_buckets(max_length), batch_buckets(batch_size)
        return cls(lengths, rows, batch_costs(config, lengths, rows), max_tokens)

    @property
    def max_rows(self) -> int:
        return self.row_buckets[-1]

    def bucket_length(self, length: int) -> int:
        return _bucket(length, self.length_buckets)

    def plan(self, lengths: Sequence[int], sizes: Sequence[int] | None = None) -> list[tuple[int, int, int, int]]:
        """:func:`plan_batches` on this grid within its token budget; ``lengths`` ascending."""
        max_cells = self.max_tokens or default_max_cells()
        return plan_batches(lengths, self.length_buckets, self.row_buckets, self.costs, sizes=sizes, max_cells=max_cells)


def predict_in_batches(
    forward: Callable[[np.ndarray, np.ndarray], np.ndarray],
    sequences: Sequence[Sequence[int]],
    grid: ShapeGrid,
    pad_id: int,
    num_outputs: int,
) -> np.ndarray:
    """Runs ``forward`` over length-sorted, grid-shaped batches of ``sequences``.

    Args:
      forward: ``(input_ids [rows, length], attention_mask [rows, length]) -> [rows, num_outputs]``.
      sequences: token id sequences, each at most the grid's longest bucket.
      grid: the shapes to pad to and the planner's costs.
      pad_id: the model's padding token id.
      num_outputs: width of ``forward``'s result.

    Returns:
      float32 ``[len(sequences), num_outputs]``, in input order.
    """
    out = np.zeros((len(sequences), num_outputs), dtype=np.float32)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start, end, rows, length in grid.plan([len(sequences[i]) for i in order]):
        chunk = order[start:end]
        ids, mask = pad_batch([sequences[i] for i in chunk], rows, length, pad_id)
        out[chunk] = np.asarray(forward(ids, mask))[: len(chunk)]
    return out
