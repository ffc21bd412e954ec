"""The shape grid, its planner and the one padding routine: the shapes every batch takes."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from flaxmodel import ShapeGrid, grid_for
from flaxmodel.inference import planner
from flaxmodel.inference.padding import pad_batch, pad_windows
from flaxmodel.inference.planner import (
    batch_buckets,
    batch_costs,
    length_buckets,
    plan_batches,
    predict_in_batches,
)
from tests.fixtures import minilm_shaped_config


def _cheapest_plan_cost(lengths, sizes, length_grid, row_grid, cost, max_cells):
    """Brute force over every way of cutting the items into consecutive batches, each in its cheapest shape."""
    n = len(lengths)
    best = math.inf
    for mask in range(2 ** (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        total = 0.0
        for start, end in zip(cuts, cuts[1:]):
            fits = [
                cost[rows, length]
                for rows in row_grid
                for length in length_grid
                if rows >= sum(sizes[start:end])
                and length >= lengths[end - 1]
                and not (max_cells and end - start > 1 and rows > row_grid[0] and rows * length > max_cells)
            ]
            total += min(fits, default=math.inf)
        best = min(best, total)
    return best


@pytest.mark.parametrize("seed", range(30))
def test_batch_plan_is_the_cheapest_cut_of_the_sorted_items(seed):
    rng = random.Random(seed)
    length_grid, row_grid = length_buckets(128), batch_buckets(16)
    cost = batch_costs(minilm_shaped_config(), length_grid, row_grid)
    n = rng.randint(1, 11)
    lengths = sorted(rng.choice([rng.randint(3, 40), rng.randint(3, 128)]) for _ in range(n))
    sizes = [rng.choice([1, 1, 1, 2, 5, 16]) for _ in range(n)]
    max_cells = rng.choice([None, 256, 1024])
    if seed % 2:
        # Shapes not yet compiled cost a compilation more, so a bigger shape can be the cheapest.
        compiled = set(rng.sample(sorted(cost), 12))
        cost = {shape: value + (0 if shape in compiled else 3e10) for shape, value in cost.items()}
    plan = plan_batches(lengths, length_grid, row_grid, cost, sizes=sizes, max_cells=max_cells)
    assert [(start, end) for start, end, _, _ in plan] == list(
        zip([0] + [end for _, end, _, _ in plan[:-1]], [end for _, end, _, _ in plan])
    )
    assert plan[0][0] == 0 and plan[-1][1] == n
    for start, end, rows, length in plan:
        assert sum(sizes[start:end]) <= rows and lengths[end - 1] <= length
    total = sum(cost[rows, length] for _, _, rows, length in plan)
    assert total == pytest.approx(_cheapest_plan_cost(lengths, sizes, length_grid, row_grid, cost, max_cells))


def test_plans_reuse_a_compiled_shape_unless_its_padding_costs_more_than_a_compilation():
    grid = ShapeGrid.for_model(minilm_shaped_config(), max_length=128, batch_size=64, max_tokens=10**9)
    eight_of_30 = [30] * 8
    assert grid.plan(eight_of_30) == [(0, 8, 8, 32)]
    # 8 more padded rows of 32 tokens cost less than a compilation: the compiled 16-row shape is taken.
    assert grid.plan(eight_of_30, compiled={(16, 32)}) == [(0, 8, 16, 32)]
    # Padding 8 short texts to 64 rows of 128 tokens costs far more: the new shape is compiled.
    assert grid.plan([10] * 8, compiled={(64, 128)}) == [(0, 8, 8, 12)]
    # Nothing compiled yet: every shape pays the compilation, so the plan makes fewer, larger batches.
    mixed = [12] * 8 + [24] * 8 + [40] * 8
    assert len(grid.plan(mixed)) == 3
    assert len(grid.plan(mixed, compiled=())) < 3


def test_pad_batch_right_pads_ids_and_masks_to_the_bucket_shape():
    ids, mask = pad_batch([[5, 6, 7], [8]], rows=4, length=5, pad_id=1)
    assert ids.dtype == mask.dtype == np.int32
    np.testing.assert_array_equal(ids, [[5, 6, 7, 1, 1], [8, 1, 1, 1, 1], [1] * 5, [1] * 5])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0] * 5, [0] * 5])


def test_predict_in_batches_returns_input_order_and_calls_only_grid_shapes():
    grid = ShapeGrid.for_model(minilm_shaped_config(), max_length=64, batch_size=16)
    rng = random.Random(0)
    sequences = [[rng.randint(2, 99) for _ in range(rng.randint(1, 64))] for _ in range(100)]
    shapes = []

    def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        shapes.append(ids.shape)
        # Per row: its real length and the sum of its ids, so results are traceable to their sequence.
        return np.stack([mask.sum(axis=1), (ids * mask).sum(axis=1)], axis=1)

    out = predict_in_batches(forward, sequences, grid, pad_id=0, num_outputs=2)
    np.testing.assert_array_equal(out, [[len(s), sum(s)] for s in sequences])
    assert all(rows in grid.row_buckets and length in grid.length_buckets for rows, length in shapes)
    assert sum(rows for rows, _ in shapes) < 2 * len(sequences)


def test_pad_windows_frames_slices_of_a_flat_array_like_pad_batch_of_the_framed_lists():
    tokens = np.arange(100, 120, dtype=np.int32)
    starts, lengths = np.array([0, 5, 12]), np.array([5, 0, 8])
    ids, mask = pad_windows(tokens, starts, lengths, rows=4, length=12, pad_id=1, prefix=(101,), suffix=(102,))
    framed = [[101, *tokens[s : s + n].tolist(), 102] for s, n in zip(starts, lengths)]
    expected_ids, expected_mask = pad_batch(framed, rows=4, length=12, pad_id=1)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(mask, expected_mask)
    assert ids[1, :3].tolist() == [101, 102, 1] and mask[3].sum() == 0


def test_the_grid_of_a_platform_takes_its_automatic_rows_and_token_cap():
    config = minilm_shaped_config()
    cpu, gpu, tpu = (grid_for(config, 128, platform) for platform in ("cpu", "gpu", "tpu"))
    assert cpu.max_rows == planner.CPU_BATCH_ROWS and cpu.max_tokens == planner.CPU_BATCH_TOKENS
    assert gpu.max_rows == tpu.max_rows == planner.ACCELERATOR_BATCH_ROWS > planner.CPU_BATCH_ROWS
    assert gpu.max_tokens == 0  # no cap: accelerators want many rows per call
    given = grid_for(config, 128, "gpu", batch_size=32, max_batch_tokens=4096)
    assert (given.max_rows, given.max_tokens) == (32, 4096)
