"""Batch planning: static shapes from the grid, the token budget, and texts kept whole."""

from __future__ import annotations

import random

import numpy as np
import pytest

from flaxmodel import ShapeGrid
from flaxmodel.inference.tokenizer import TokenWindows
from pipelines.model import batching
from tests.fixtures import minilm_shaped_config

CONFIG = minilm_shaped_config()


def _grid(max_tokens: int | None = None) -> ShapeGrid:
    """The MiniLM grid for 128-token windows and 64 rows; ``None``: a budget no batch reaches."""
    return ShapeGrid.for_model(CONFIG, max_length=128, batch_size=64, max_tokens=max_tokens or 10**9)


GRID = _grid()


def plan_record_batches(records: list[list[int]], grid: ShapeGrid) -> list[tuple[list[int], int, int]]:
    """:func:`pipelines.model.batching.plan_record_batches` for texts given as their window lengths."""
    longest = np.array([max(windows) for windows in records])
    sizes = np.array([len(windows) for windows in records])
    return [(m.tolist(), rows, length) for m, rows, length in batching.plan_record_batches(longest, sizes, grid)]


def _random_records(seed: int, count: int) -> list[list[int]]:
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        windows = rng.choice([1, 1, 1, 1, 2, 5])
        records.append([128] * (windows - 1) + [rng.randint(3, 128)])
    return records


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_cells", [None, 1024, 4096])
def test_every_record_lands_whole_in_one_batch_of_a_grid_shape_within_budget(seed, max_cells):
    records = _random_records(seed, 300)
    plans = plan_record_batches(records, _grid(max_cells))
    placed = sorted(i for members, _, _ in plans for i in members)
    assert placed == list(range(len(records)))
    for members, rows, length in plans:
        windows = [n for i in members for n in records[i]]
        assert rows in GRID.row_buckets and length in GRID.length_buckets
        assert len(windows) <= rows and max(windows) <= length
        if max_cells is not None and len(members) > 1 and rows > GRID.row_buckets[0]:
            assert rows * length <= max_cells


def test_short_texts_fill_batches_of_short_buckets():
    plans = plan_record_batches([[10]] * 64 + [[100]] * 8, GRID)
    short, long = (min(b for b in GRID.length_buckets if b >= n) for n in (10, 100))
    assert short < long
    assert [(len(m), rows, length) for m, rows, length in plans] == [(64, 64, short), (8, 8, long)]


def test_the_token_budget_caps_the_rows_of_long_batches():
    plans = plan_record_batches([[128]] * 40, _grid(4096))
    assert [(len(m), rows, length) for m, rows, length in plans] == [(32, 32, 128), (8, 8, 128)]


def test_a_record_bigger_than_the_budget_still_gets_a_batch_of_its_own():
    plans = plan_record_batches([[20]] * 8 + [[128] * 16], _grid(1024))
    assert [(sorted(m), rows, length) for m, rows, length in plans] == [(list(range(8)), 8, 20), ([8], 16, 128)]



def test_a_block_plan_runs_every_window_once_with_its_texts_windows_together():
    records = _random_records(7, 200)
    lengths = [n - 2 for windows in records for n in windows]  # content tokens: the padding adds 2 specials
    offsets = np.cumsum([0] + [len(w) for w in records])
    windows = TokenWindows(
        tokens=np.zeros(sum(lengths), np.int32),
        num_tokens=np.zeros(len(records), np.int32),
        truncated=np.zeros(len(records), bool),
        window_offsets=offsets,
        window_start=np.cumsum([0] + lengths[:-1]),
        window_length=np.array(lengths, np.int32),
    )
    batches = batching.plan_block(windows, _grid(1024), specials=2, buffer_windows=100)
    placed = np.concatenate([b.windows for b in batches])
    assert sorted(placed.tolist()) == list(range(len(lengths)))
    text_of_window = np.repeat(np.arange(len(records)), np.diff(offsets))
    for batch in batches:
        texts = set(text_of_window[batch.windows].tolist())
        assert sum(len(records[t]) for t in texts) == len(batch.windows) <= batch.rows
        assert max(lengths[w] + 2 for w in batch.windows.tolist()) <= batch.length
        assert (batch.rows, batch.length) in GRID.costs
