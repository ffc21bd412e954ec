"""Classifier behaviour callers rely on: results in input order whatever the batching,
a bounded number of compilations, and label names from the checkpoint's id2label.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import transformers

from flaxmodel import load_classifier
from flaxmodel.predictor import batch_buckets, batch_costs, length_buckets, plan_batches
from tests.fixtures import LONG_TEXTS, MAX_LENGTH, SHORT_TEXTS, TEXTS, hf_tokenizer, minilm_shaped_config

# Small buckets so that a few calls visit the whole grid: lengths (16, 32, 48), batches (8, 16).
BATCH_SIZE = 16


@pytest.fixture(scope="module")
def classifier(tiny_checkpoint):
    return load_classifier(tiny_checkpoint("bert"), batch_size=BATCH_SIZE)


def texts_of_varied_length(count: int) -> list[str]:
    """Short and long texts interleaved, so sorting by length reorders them."""
    pool = SHORT_TEXTS + LONG_TEXTS + tuple(" ".join(SHORT_TEXTS[: i + 1]) for i in range(len(SHORT_TEXTS)))
    return [pool[(i * 7) % len(pool)] + f" {i}" for i in range(count)]


def _cheapest_plan_cost(lengths, sizes, length_grid, row_grid, cost, max_cells):
    """Brute force over every way of cutting the items into consecutive batches."""
    n = len(lengths)
    best = math.inf
    for mask in range(2 ** (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        total = 0.0
        for start, end in zip(cuts, cuts[1:]):
            rows_needed = sum(sizes[start:end])
            rows = next((r for r in row_grid if r >= rows_needed), None)
            length = next(b for b in length_grid if b >= lengths[end - 1])
            if rows is None or (
                max_cells and end - start > 1 and rows > row_grid[0] and rows * length > max_cells
            ):
                total = math.inf
                break
            total += cost[rows, length]
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
    plan = plan_batches(lengths, length_grid, row_grid, cost, sizes=sizes, max_cells=max_cells)
    assert [(start, end) for start, end, _, _ in plan] == list(
        zip([0] + [end for _, end, _, _ in plan[:-1]], [end for _, end, _, _ in plan])
    )
    assert plan[0][0] == 0 and plan[-1][1] == n
    for start, end, rows, length in plan:
        assert sum(sizes[start:end]) <= rows and lengths[end - 1] <= length
    total = sum(cost[rows, length] for _, _, rows, length in plan)
    assert total == pytest.approx(_cheapest_plan_cost(lengths, sizes, length_grid, row_grid, cost, max_cells))


def test_predict_proba_preserves_input_order(classifier):
    texts = texts_of_varied_length(40)
    lengths = [len(ids) for ids in classifier.text_encoder.encode(texts)]
    assert lengths != sorted(lengths)
    together = classifier.predict_proba(texts)
    one_by_one = np.concatenate([classifier.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(classifier.predict_proba(texts[::-1]), together[::-1], atol=1e-5)
    assert len({tuple(row) for row in np.round(together, 4)}) > 1


def test_compiles_at_most_once_per_bucket(tiny_checkpoint):
    classifier = load_classifier(tiny_checkpoint("bert"), batch_size=BATCH_SIZE)
    grid = len(classifier.length_buckets) * len(classifier.batch_buckets)
    texts = texts_of_varied_length(60)
    counts = (1, 3, 9, 17, 33, 60)
    for count in counts:
        classifier.predict_proba(texts[:count])
    compiled = classifier.num_compiles
    assert 1 < compiled <= grid
    for _ in range(3):
        for count in counts:
            classifier.predict_proba(texts[:count])
    assert classifier.num_compiles == compiled
    for count in counts:
        classifier.predict_proba(texts[-count:])
    assert classifier.num_compiles <= grid
    # XLA's own cache agrees: one executable per shape seen.
    assert classifier._jitted._cache_size() == classifier.num_compiles


def test_texts_longer_than_max_length_are_truncated_not_refused(classifier):
    probabilities = classifier.predict_proba([LONG_TEXTS[0] * 20])
    assert probabilities.shape == (1, len(classifier.labels))


def test_empty_input_and_single_string(classifier):
    assert classifier.predict_proba([]).shape == (0, len(classifier.labels))
    with pytest.raises(TypeError, match="sequence of texts"):
        classifier.predict_proba("one text")


def test_labels_come_from_id2label(tiny_checkpoint):
    labels = ("neither", "offensive", "hate", "spam")
    folder = tiny_checkpoint("bert", labels=labels)
    reference = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    classifier = load_classifier(folder)
    assert classifier.labels == labels
    batch = hf_tokenizer(folder, "bert")(list(TEXTS), padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = [reference.config.id2label[i] for i in logits.argmax(dim=1).tolist()]
    assert len(set(expected)) > 1
    assert classifier.predict(TEXTS) == expected
