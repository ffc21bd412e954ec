"""Classifier behaviour callers rely on: results in input order whatever the batching,
a bounded number of compilations, and label names from the checkpoint's id2label.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from flaxmodel import load_classifier
from tests.fixtures import LONG_TEXTS, MAX_LENGTH, SHORT_TEXTS, TEXTS, hf_tokenizer

# Small buckets so that a few calls visit the whole grid: lengths (16, 32, 48), batches (8, 16).
BATCH_SIZE = 16


@pytest.fixture(scope="module")
def classifier(tiny_checkpoint):
    return load_classifier(tiny_checkpoint("bert"), batch_size=BATCH_SIZE)


def texts_of_varied_length(count: int) -> list[str]:
    """Short and long texts interleaved, so sorting by length reorders them."""
    pool = SHORT_TEXTS + LONG_TEXTS + tuple(" ".join(SHORT_TEXTS[: i + 1]) for i in range(len(SHORT_TEXTS)))
    return [pool[(i * 7) % len(pool)] + f" {i}" for i in range(count)]


def test_predict_proba_preserves_input_order(classifier):
    texts = texts_of_varied_length(40)
    lengths = [len(ids) for ids in classifier.tokenizer.encode(texts)]
    assert lengths != sorted(lengths)
    together = classifier.predict_proba(texts)
    one_by_one = np.concatenate([classifier.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(classifier.predict_proba(texts[::-1]), together[::-1], atol=1e-5)
    assert len({tuple(row) for row in np.round(together, 4)}) > 1


def test_compiles_at_most_once_per_bucket(tiny_checkpoint):
    classifier = load_classifier(tiny_checkpoint("bert"), batch_size=BATCH_SIZE)
    grid = len(classifier.grid.length_buckets) * len(classifier.grid.row_buckets)
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
