"""The one padding routine: where token ids become padded ``[rows, length]`` batches.

:func:`pad_windows` frames windows of a flat token array with special tokens and
right-pads them; :func:`pad_batch` is it for lists of sequences.  Every batch
the planner (:mod:`~flaxmodel.inference.planner`) cuts, for inference and
training alike, is padded here.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np


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
