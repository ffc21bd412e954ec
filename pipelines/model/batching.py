"""Cutting a block's token windows into batches of the model's static shape grid.

XLA compiles one program per input shape, so every batch must have a shape
from the model's :class:`flaxmodel.ShapeGrid` (a length bucket times a row
bucket).  :func:`plan_block` takes the windows of a block's distinct texts,
sorts the texts by their longest window (in groups of up to
``buffer_windows`` windows, in block order) and cuts them with the grid's own
planner, the one the predictor and training use: the cuts of least estimated
cost (FLOPs with padding, a per-call overhead, and a compilation for a shape
the model has not compiled yet) within at most
``batch_size`` rows and a budget of padded tokens per batch (on CPU workers by
default cache-sized).  All windows of one text go into the same batch, so its
scores can be aggregated right after inference, without a shuffle.  The plan
is a list of window indices per batch; the model handler's runner plans each
block where the model runs (so the grid can follow its devices), then pads each
batch right before it goes to the device.
"""

from __future__ import annotations

from typing import Container, NamedTuple

import numpy as np

from flaxmodel import ShapeGrid, TokenWindows


class PlannedBatch(NamedTuple):
    """One model input: the windows it holds (int64 indices into the block's windows) and its grid shape."""

    windows: np.ndarray
    rows: int
    length: int


def plan_record_batches(
    longest: np.ndarray, sizes: np.ndarray, grid: ShapeGrid, compiled: Container[tuple[int, int]] | None = None
) -> list[tuple[np.ndarray, int, int]]:
    """Groups texts into batches: ``[(text indices, padded rows, padded length), ...]``.

    Args:
      longest: int ``[n]``, each text's longest window in tokens (special tokens included).
      sizes: int ``[n]``, its number of windows.
      grid: the shapes and the planner.
      compiled: the shapes the model has compiled, which the planner prefers (:meth:`flaxmodel.ShapeGrid.plan`).

    Returns:
      Per batch, the int64 indices of its texts, its rows and length.  Texts are
      sorted by their longest window and cut where the grid's planner finds the
      least total cost, each text's windows kept in one batch; a batch of several
      texts stays within the grid's token budget (one text always fits a batch of
      its own: ``--max_windows`` is checked against ``--batch_size`` at launch).
    """
    order = np.argsort(longest, kind="stable")
    plan = grid.plan(longest[order].tolist(), sizes=sizes[order].tolist(), compiled=compiled)
    return [(order[start:end], rows, length) for start, end, rows, length in plan]


def _window_indices(texts: np.ndarray, window_offsets: np.ndarray) -> np.ndarray:
    """int64 indices of all windows of ``texts``, text by text."""
    counts = window_offsets[texts + 1] - window_offsets[texts]
    firsts = np.repeat(window_offsets[texts], counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return firsts + within


def plan_block(
    windows: TokenWindows,
    grid: ShapeGrid,
    specials: int,
    buffer_windows: int,
    compiled: Container[tuple[int, int]] | None = None,
) -> tuple[PlannedBatch, ...]:
    """The batches of one block's windows, every window in exactly one.

    Args:
      windows: the block's windows.
      grid: the shapes and the planner.
      specials: special tokens the padding adds to every window.
      buffer_windows: texts are sorted and planned in groups of about this many windows, in block order.
      compiled: the shapes the model has compiled, which the planner prefers.

    Returns:
      The batches, each text's windows in one.
    """
    sizes = windows.windows_per_text
    longest = windows.window_length[windows.window_offsets[:-1]] + specials
    group_of = windows.window_offsets[:-1] // buffer_windows
    batches = []
    for group in np.unique(group_of):
        texts = np.flatnonzero(group_of == group)
        for members, rows, length in plan_record_batches(longest[texts], sizes[texts], grid, compiled):
            batches.append(PlannedBatch(_window_indices(texts[members], windows.window_offsets), rows, length))
    return tuple(batches)
