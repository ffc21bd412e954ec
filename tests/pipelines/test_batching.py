"""Batch planning: static shapes from the grid, the token budget, and records kept whole."""

from __future__ import annotations

import random

import pytest

from pipelines.batching import BatchGrid, plan_batches
from pipelines.options import OptionError

GRID = BatchGrid.for_model(max_length=128, batch_size=64, max_tokens=4096)


def _random_records(seed: int, count: int) -> list[list[int]]:
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        windows = rng.choice([1, 1, 1, 1, 2, 5])
        records.append([128] * (windows - 1) + [rng.randint(3, 128)])
    return records


@pytest.mark.parametrize("seed", range(5))
def test_every_record_lands_whole_in_one_batch_of_a_grid_shape_within_budget(seed):
    records = _random_records(seed, 300)
    plans = plan_batches(records, GRID)
    placed = sorted(i for members, _, _ in plans for i in members)
    assert placed == list(range(len(records)))
    for members, rows, length in plans:
        windows = [n for i in members for n in records[i]]
        assert rows in GRID.row_buckets and length in GRID.length_buckets
        assert len(windows) <= rows and max(windows) <= length
        assert rows * length <= GRID.max_tokens


def test_short_texts_fill_batches_of_short_buckets():
    plans = plan_batches([[10]] * 64 + [[100]] * 8, GRID)
    short, long = GRID.bucket_length(10), GRID.bucket_length(100)
    assert short < long
    assert [(len(m), rows, length) for m, rows, length in plans] == [(64, 64, short), (8, 8, long)]


def test_the_token_budget_caps_the_rows_of_long_batches():
    plans = plan_batches([[128]] * 40, GRID)
    assert [(len(m), rows, length) for m, rows, length in plans] == [(32, 32, 128), (8, 8, 128)]


def test_a_record_that_would_overflow_the_batch_starts_the_next_one():
    plans = plan_batches([[20]] * 60 + [[128, 128, 128, 128, 20]], BatchGrid.for_model(128, 64, 8192))
    assert [sorted(m) for m, _, _ in plans] == [list(range(60)), [60]]


def test_max_windows_that_cannot_fit_a_batch_is_refused_up_front():
    BatchGrid.for_model(128, 64, 8192).check_record_fits(16)
    with pytest.raises(OptionError, match="--max_windows 16"):
        BatchGrid.for_model(128, 64, 1024).check_record_fits(16)
    with pytest.raises(OptionError, match="--batch_size"):
        BatchGrid.for_model(128, 8, 8192).check_record_fits(16)
