"""Near-duplicate detection between validation and training texts.

DynaHate pairs each original entry with a minimal perturbation that usually flips the label, and the pairs
straddle its train and dev splits: a dev row whose partner was trained on rewards memorising the partner,
not generalising. :func:`seen_in_training` finds those rows so selection can drop them.

Two texts are near-duplicates when the Jaccard overlap of their word sets (lower-cased ``\\w+`` tokens) is
at least :data:`JACCARD`. The overlaps are the non-zeros of a sparse product of word-incidence matrices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sparse

__all__ = ["JACCARD", "seen_in_training"]

# DynaHate's dev split holds 288 pairs whose both halves are in dev: their word-set overlap has median 0.75
# and 10th percentile 0.47, so 0.5 catches about nine pairs in ten (flaxmodel/research/README.md).
JACCARD = 0.5

_WORD = re.compile(r"\w+")
_CHUNK = 512


def _word_matrix(texts: Sequence[str], vocab: dict[str, int]) -> sparse.csr_matrix:
    rows: list[int] = []
    cols: list[int] = []
    for i, text in enumerate(texts):
        for word in set(_WORD.findall(text.lower())):
            rows.append(i)
            cols.append(vocab.setdefault(word, len(vocab)))
    data = np.ones(len(rows), dtype=np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), max(len(vocab), 1)))


def seen_in_training(queries: Sequence[str], corpus: Sequence[str], threshold: float = JACCARD) -> np.ndarray:
    """Which queries have a near-duplicate in the corpus.

    Args:
      queries: validation texts, ``[q]``.
      corpus: training texts, ``[c]``.
      threshold: the least word-set Jaccard overlap that counts as a near-duplicate, in (0, 1].

    Returns:
      bool ``[q]``: True where some corpus text overlaps the query by at least ``threshold``. A query
      without words is never a near-duplicate.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    seen = np.zeros(len(queries), dtype=bool)
    if not len(queries) or not len(corpus):
        return seen
    vocab: dict[str, int] = {}
    q = _word_matrix(queries, vocab)
    c = _word_matrix(corpus, vocab)
    q.resize((q.shape[0], len(vocab)))
    c.resize((c.shape[0], len(vocab)))
    q_sizes = np.asarray(q.sum(axis=1)).ravel()
    c_sizes = np.asarray(c.sum(axis=1)).ravel()
    corpus_t = c.T.tocsc()
    # Common words make the product nearly dense, so it is taken a slice of queries at a time: 512 queries
    # against DynaHate's 32,885 training entries are at most 17M non-zeros (about 200 MB as COO).
    for start in range(0, q.shape[0], _CHUNK):
        shared = (q[start : start + _CHUNK] @ corpus_t).tocoo()
        union = q_sizes[start + shared.row] + c_sizes[shared.col] - shared.data
        seen[start + shared.row[shared.data >= threshold * union]] = True
    return seen
