"""The one shape grid, batch planner and padding routine, for inference and training alike.

XLA compiles one program per input shape, so every batch is padded up to a
(rows, length) bucket of a small fixed grid: a run compiles at most once per
bucket however many texts it sees.  :class:`ShapeGrid` holds a model's grid,
the estimated cost of each shape and the budget of padded tokens per batch;
:func:`plan_batches` cuts length-sorted items into the grid shapes of least
total cost; the batches are padded by the one padding routine
(:mod:`~flaxmodel.inference.padding`);
:func:`predict_in_batches` runs any padded-batch forward function over
sequences of any lengths and returns results in input order.  The predictor,
the training loop and the pipelines' batching all go through these, so they
agree on shapes by construction.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Callable, Container, Mapping, Sequence

import numpy as np

from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.model import forward_flops
from flaxmodel.inference.padding import pad_batch

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
# at ~170, 64 x 64 at ~150 and 64 x 128 at ~115 (8 x 128: ~170).  The int8 path too, once its kernels'
# column sums were computed at load: the default model's 2,479 sorted validation texts ran 774 texts/s at
# 1024 tokens, 683 at 2048 and 659 at 4096 (2-core AMD EPYC).  The planner keeps batches within this many
# padded tokens; accelerators get no cap.
CPU_BATCH_TOKENS = 1024
# A shape the worker has not compiled yet costs a compilation: the planner charges it as this many more
# tokens, so that a worker settles on few shapes.  Compiling one MiniLM bucket took ~0.9 s on the 2-core CPU
# (~150 tweets of compute, ~4,500 tokens) and takes seconds on GPUs, so this undercharges everywhere.  On
# 400,000 tweets in 4,096-text blocks it cut the shapes compiled from 91 to 21 on the 1024-row accelerator
# grid (calls 3,903 -> 1,866, padding 5.4% -> 8.9%) and from 43 to 19 on the CPU grid (padding 5.3% -> 5.6%).
COMPILE_COST_TOKENS = 1024
# Rows of the largest batch when none is given: on CPU the token cap keeps batches within cache anyway.
# On GPUs and TPUs 1024 tweet-sized windows of MiniLM are ~0.7 TFLOP (0.65 GFLOP per 31-token text),
# milliseconds of device work per call against tens of microseconds of dispatch.
CPU_BATCH_ROWS = 64
ACCELERATOR_BATCH_ROWS = 1024


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
    hold fewer rows than its bucket (filled with empty rows).  A batch takes the
    cheapest shape that holds it: its smallest, unless ``cost`` makes a bigger one
    cheaper (one already compiled, see :meth:`ShapeGrid.plan`).  With
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
    cost_table = np.array([[cost[rows, length] for length in length_grid] for rows in row_grid])
    single = _cheapest_shapes(cost_table)
    if max_cells is not None:
        too_big = np.outer(row_grid, length_grid) > max_cells
        too_big[0] = False
        several = _cheapest_shapes(np.where(too_big, math.inf, cost_table))
    else:
        several = single
    candidates = []
    for first in [np.searchsorted(prefix, prefix[1:] - rows, "left") for rows in row_grid] + [ends - 1]:
        first = np.minimum(first, ends - 1)
        row_index = np.searchsorted(row_grid, prefix[ends] - prefix[first], "left")
        alone = ends - first == 1
        total = np.where(alone, single[0][row_index, length_index], several[0][row_index, length_index])
        shape = np.where(alone, single[1][row_index, length_index], several[1][row_index, length_index])
        candidates.append((first.tolist(), total.tolist(), shape.tolist()))
    best = [0.0] + [math.inf] * n
    cut = [(0, 0)] * (n + 1)
    for end in range(1, n + 1):
        for first, total, shape in candidates:
            start = first[end - 1]
            value = best[start] + total[end - 1]
            if value < best[end]:
                best[end], cut[end] = value, (start, shape[end - 1])
    plan = []
    end = n
    while end > 0:
        start, shape = cut[end]
        rows, length = divmod(shape, len(length_grid))
        plan.append((start, end, int(row_grid[rows]), int(length_grid[length])))
        end = start
    return plan[::-1]


def _cheapest_shapes(cost_table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a batch needing the shape of each cell of ``cost_table`` ``[row buckets, length buckets]``: the least
    cost of a shape at least as big, and that shape as ``row index * length buckets + length index``.

    Without compilation costs the cell itself is the cheapest; with them a bigger shape already
    compiled can be.  Ties go to the smaller shape; ``inf`` marks a cell no shape fits.
    """
    rows, lengths = cost_table.shape
    least = cost_table.astype(np.float64)
    shape = np.arange(rows * lengths).reshape(rows, lengths)
    for r in range(rows - 1, -1, -1):
        for c in range(lengths - 1, -1, -1):
            for other in ((r + 1, c), (r, c + 1)):
                if other[0] < rows and other[1] < lengths and least[other] < least[r, c]:
                    least[r, c], shape[r, c] = least[other], shape[other]
    return least, shape


def batch_costs(
    config: EncoderConfig, length_grid: Sequence[int], row_grid: Sequence[int]
) -> dict[tuple[int, int], float]:
    """Estimated cost of each grid shape for :func:`plan_batches`: its FLOPs plus a per-call overhead."""
    overhead = CALL_OVERHEAD_TOKENS * forward_flops(config, 1, 1)
    return {
        (rows, length): forward_flops(config, rows, length) + overhead for rows in row_grid for length in length_grid
    }


@dataclasses.dataclass(frozen=True)
class ShapeGrid:
    """The static ``(rows, length)`` shapes batches of one model take, their costs and the token budget.

    ``max_tokens`` caps the padded tokens of a batch of several items (0: no cap).
    :func:`grid_for` builds the grid of a platform.
    """

    length_buckets: tuple[int, ...]
    row_buckets: tuple[int, ...]
    costs: Mapping[tuple[int, int], float]
    max_tokens: int = 0
    # What a compilation costs, in the units of ``costs`` (0: compiling is free).
    compile_cost: float = 0.0

    @classmethod
    def for_model(cls, config: EncoderConfig, max_length: int, batch_size: int, max_tokens: int = 0) -> "ShapeGrid":
        """The grid of ``config``'s model for windows of ``max_length`` tokens and at most ``batch_size`` rows."""
        lengths, rows = length_buckets(max_length), batch_buckets(batch_size)
        compile_cost = COMPILE_COST_TOKENS * forward_flops(config, 1, 1)
        return cls(lengths, rows, batch_costs(config, lengths, rows), max_tokens, compile_cost)

    @property
    def max_rows(self) -> int:
        return self.row_buckets[-1]

    def bucket_length(self, length: int) -> int:
        return _bucket(length, self.length_buckets)

    def plan(
        self,
        lengths: Sequence[int],
        sizes: Sequence[int] | None = None,
        compiled: Container[tuple[int, int]] | None = None,
    ) -> list[tuple[int, int, int, int]]:
        """:func:`plan_batches` on this grid within its token budget; ``lengths`` ascending.

        ``compiled``: the ``(rows, length)`` shapes the model has compiled; every other shape
        costs :attr:`compile_cost` more (None: shapes cost the same compiled or not).
        """
        max_cells = self.max_tokens or None
        costs = self.costs
        if compiled is not None:
            costs = {shape: cost + (0.0 if shape in compiled else self.compile_cost) for shape, cost in costs.items()}
        return plan_batches(lengths, self.length_buckets, self.row_buckets, costs, sizes=sizes, max_cells=max_cells)


def grid_for(
    config: EncoderConfig,
    max_length: int,
    platform: str,
    *,
    batch_size: int = 0,
    max_batch_tokens: int = 0,
) -> ShapeGrid:
    """The one grid of a model on a platform: where a worker, a classifier or a training run gets its shapes.

    Args:
      config: the model's config (its FLOPs price the shapes).
      max_length: tokens of the longest window, special tokens included.
      platform: ``cpu``, ``gpu`` or ``tpu`` (``jax.Device.platform``).
      batch_size: rows of the largest batch; 0: :data:`CPU_BATCH_ROWS` on CPUs,
        :data:`ACCELERATOR_BATCH_ROWS` on accelerators.
      max_batch_tokens: padded tokens per batch of several items; 0: :data:`CPU_BATCH_TOKENS`
        on CPUs, no cap on accelerators.

    Returns:
      The :class:`ShapeGrid`.
    """
    cpu = platform == "cpu"
    rows = batch_size or (CPU_BATCH_ROWS if cpu else ACCELERATOR_BATCH_ROWS)
    tokens = max_batch_tokens or (CPU_BATCH_TOKENS if cpu else 0)
    return ShapeGrid.for_model(config, max_length, rows, tokens)


def predict_in_batches(
    forward: Callable[[np.ndarray, np.ndarray], np.ndarray],
    sequences: Sequence[Sequence[int]],
    grid: ShapeGrid,
    pad_id: int,
    num_outputs: int,
    compiled: Container[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Runs ``forward`` over length-sorted, grid-shaped batches of ``sequences``.

    Args:
      forward: ``(input_ids [rows, length], attention_mask [rows, length]) -> [rows, num_outputs]``.
      sequences: token id sequences, each at most the grid's longest bucket.
      grid: the shapes to pad to and the planner's costs.
      pad_id: the model's padding token id.
      num_outputs: width of ``forward``'s result.
      compiled: the shapes ``forward`` has compiled, which the plan prefers (:meth:`ShapeGrid.plan`).

    Returns:
      float32 ``[len(sequences), num_outputs]``, in input order.
    """
    out = np.zeros((len(sequences), num_outputs), dtype=np.float32)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start, end, rows, length in grid.plan([len(sequences[i]) for i in order], compiled=compiled):
        chunk = order[start:end]
        ids, mask = pad_batch([sequences[i] for i in chunk], rows, length, pad_id)
        out[chunk] = np.asarray(forward(ids, mask))[: len(chunk)]
    return out
