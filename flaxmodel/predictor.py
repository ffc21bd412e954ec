"""Jitted inference over a fixed grid of static shapes, and ``load_classifier``.

XLA compiles one program per input shape.  The predictor pads every batch up to
a (batch size, sequence length) bucket from a small fixed grid, so a run
compiles at most once per bucket however many texts it sees.  ``predict_ids``
sorts texts by length and :func:`plan_batches` cuts them into the grid shapes of
least estimated cost (FLOPs, padding included, plus a per-call overhead; on CPU
within a cache-sized token budget).  The softmax (or sigmoid) is fused into the
jitted function, parameters are placed on the first device once, and the same
:class:`Classifier` is safe to share between threads.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import math
import threading
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from flaxmodel.checkpoint import load_checkpoint
from flaxmodel.config import EncoderConfig
from flaxmodel.model import Params, apply, forward_flops, probabilities
from flaxmodel.tokenizer import TextEncoder

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
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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
    batch that fits it is a candidate.
    """
    n = len(lengths)
    sizes = [1] * n if sizes is None else sizes
    if len(sizes) != n:
        raise ValueError(f"{n} lengths but {len(sizes)} sizes")
    prefix = [0]
    for size in sizes:
        prefix.append(prefix[-1] + size)
    best = [0.0] + [math.inf] * n
    cut: list[tuple[int, int, int]] = [(0, 0, 0)] * (n + 1)
    for end in range(1, n + 1):
        length = _bucket(lengths[end - 1], length_grid)
        if sizes[end - 1] > row_grid[-1]:
            raise ValueError(f"an item of {sizes[end - 1]} rows exceeds the largest row bucket {row_grid[-1]}")
        starts = {bisect.bisect_left(prefix, prefix[end] - rows, 0, end) for rows in row_grid} | {end - 1}
        for start in starts:
            if start == end:
                continue
            rows = _bucket(prefix[end] - prefix[start], row_grid)
            too_big = max_cells is not None and rows * length > max_cells and rows > row_grid[0]
            if too_big and end - start > 1:
                continue
            total = best[start] + cost[rows, length]
            if total < best[end]:
                best[end], cut[end] = total, (start, rows, length)
    plan = []
    end = n
    while end > 0:
        start, rows, length = cut[end]
        plan.append((start, end, rows, length))
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


def _forward(params: Params, input_ids: jax.Array, attention_mask: jax.Array, *, config, dtype) -> jax.Array:
    return probabilities(apply(params, input_ids, attention_mask, config=config, dtype=dtype), config)


class Classifier:
    """A loaded text classifier: tokenizer, parameters on device, jitted forward."""

    def __init__(
        self,
        config: EncoderConfig,
        params: Params,
        text_encoder: TextEncoder,
        *,
        name: str = "model",
        dtype: str = "float32",
        batch_size: int = 64,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.config = config
        self.name = name
        self.dtype = dtype
        self.batch_size = batch_size
        self.text_encoder = text_encoder
        self.max_length = text_encoder.max_length
        self.length_buckets = length_buckets(self.max_length)
        self.batch_buckets = batch_buckets(batch_size)
        self.costs = batch_costs(config, self.length_buckets, self.batch_buckets)
        self.max_cells = default_max_cells()
        self.pad_id = config.pad_token_id
        self.host_params = params
        compute = DTYPES[dtype]
        self.params = jax.device_put(jax.tree_util.tree_map(lambda p: jnp.asarray(p, compute), params))
        self._jitted = jax.jit(functools.partial(_forward, config=config, dtype=compute))
        self._shapes: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    @property
    def num_compiles(self) -> int:
        """Distinct (batch, length) shapes run so far: each one compiled once."""
        return len(self._shapes)

    @functools.cached_property
    def weights_hash(self) -> str:
        """Short SHA-256 over the parameters, to tell which weights labelled a row."""
        digest = hashlib.sha256()
        for path, value in sorted(traverse_util.flatten_dict(self.host_params).items()):
            digest.update("/".join(path).encode())
            digest.update(np.ascontiguousarray(value, dtype=np.float32).tobytes())
        return digest.hexdigest()[:16]

    def bucket_length(self, length: int) -> int:
        return _bucket(length, self.length_buckets)

    def bucket_batch(self, size: int) -> int:
        return _bucket(size, self.batch_buckets)

    def pad(self, sequences: Sequence[Sequence[int]], length: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Right-pads sequences into ``[rows, length]`` id and mask arrays."""
        ids = np.full((rows, length), self.pad_id, dtype=np.int32)
        mask = np.zeros((rows, length), dtype=np.int32)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return ids, mask

    def predict_padded(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Probabilities of one already bucket-shaped batch."""
        shape = tuple(input_ids.shape)
        if shape not in self._shapes:
            with self._lock:
                self._shapes.add(shape)
        return np.asarray(self._jitted(self.params, input_ids, attention_mask))

    def predict_ids(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Probabilities ``[n, num_labels]`` for token id sequences, in input order.

        Sequences are sorted by length and run in the grid-shaped batches
        :func:`plan_batches` picks for them.
        """
        out = np.zeros((len(sequences), self.config.num_labels), dtype=np.float32)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        lengths = [len(sequences[i]) for i in order]
        plan = plan_batches(lengths, self.length_buckets, self.batch_buckets, self.costs, max_cells=self.max_cells)
        for start, end, rows, length in plan:
            chunk = order[start:end]
            ids, mask = self.pad([sequences[i] for i in chunk], length, rows)
            out[chunk] = self.predict_padded(ids, mask)[: len(chunk)]
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities ``[n_texts, n_labels]``; texts past ``max_length`` are truncated."""
        if isinstance(texts, str):
            raise TypeError("predict_proba takes a sequence of texts, not one string")
        if not len(texts):
            return np.zeros((0, self.config.num_labels), dtype=np.float32)
        return self.predict_ids(self.text_encoder.encode(texts))

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable label name of each text."""
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]


def load_classifier(
    path: str | None = None,
    *,
    labels: Sequence[str] | None = None,
    dtype: str = "float32",
    batch_size: int = 64,
    max_length: int | None = None,
) -> Classifier:
    """Loads a Hugging Face style checkpoint folder (local or on a Beam filesystem).

    ``labels`` names the classes when the folder holds only a base encoder (a
    fresh head is initialised, with a warning).  ``max_length`` caps the tokens
    per text (default: what the model's position table allows).
    """
    from flaxmodel.default_model import default_model_path

    path = str(path) if path is not None else default_model_path()
    checkpoint = load_checkpoint(path, labels=labels)
    config = checkpoint.config
    limit = config.max_length if max_length is None else min(max_length, config.max_length)
    text_encoder = TextEncoder.from_folder(path, limit)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return Classifier(config, checkpoint.params, text_encoder, name=name, dtype=dtype, batch_size=batch_size)
