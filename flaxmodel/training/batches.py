"""What one training step eats: the data order of each epoch, class weights and padded batches.

The order of an epoch (and, for a data mixture, which rows it samples) is a
function of the seed and the epoch alone, so a resumed run sees exactly the
batches an uninterrupted one would.  A row's target is the set of classes its
label allows (one class for an ordinary label, several for a partial one).  Batches group
texts of similar length and are padded by :func:`flaxmodel.inference.padding.pad_batch`
to the grid's length buckets, so the train step compiles once per bucket.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from flax import struct

from flaxmodel.errors import ConfigError
from flaxmodel.inference.padding import pad_batch
from flaxmodel.inference.planner import ShapeGrid
from flaxmodel.training.config import CLASS_WEIGHTING, parse_class_weights

# Batches are formed inside shuffled pools of this many batches: each pool is
# sorted by length, so batches pad little yet the data order stays random.
POOL_BATCHES = 50


@struct.dataclass
class Batch:
    """One padded training batch; rows past the real texts have weight 0 and do not count.

    Attributes:
      ids, mask: int32 ``[rows, length]`` token ids and attention mask.
      targets: float32 ``[rows, num_labels]`` 1 for each class a row's label allows.
      weights: float32 ``[rows]`` loss weight of each row (its classes' mean class weight, 0 for padding).
      soft: float32 ``[rows, num_labels]`` the teachers' mean probabilities (distillation), 0 without.
      groups: float32 ``[rows, categories]`` 1 where a row attacks a target category (joint training of
        the target head), ``[rows, 0]`` without.
      groups_known: float32 like ``groups``, 1 where the row's source annotates that category.
    """

    ids: jax.Array
    mask: jax.Array
    targets: jax.Array
    weights: jax.Array
    soft: jax.Array
    groups: jax.Array
    groups_known: jax.Array


def epoch_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, rows: np.ndarray | None = None
) -> list[np.ndarray]:
    """Row indices of each batch of an epoch: a function of ``(seed, epoch)`` only.

    Args:
      lengths: int ``[n]`` token count of each training text.
      batch_size: rows per batch; the last batch of a pool may be shorter.
      seed, epoch: what the order depends on.
      rows: the rows this epoch trains on (a mixture's sample, repeats allowed); default: every row once.

    Returns:
      The batches in training order, each an int array of row indices; together
      they cover ``rows`` once.
    """
    rng = np.random.default_rng([seed, epoch])
    rows = np.arange(len(lengths)) if rows is None else np.asarray(rows)
    order = rows[rng.permutation(len(rows))]
    batches = []
    pool = batch_size * POOL_BATCHES
    for start in range(0, len(order), pool):
        part = order[start : start + pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def class_weights(spec: str, labels: Sequence[str], counts: np.ndarray) -> np.ndarray:
    """Per-class loss weights: uniform, inverse frequency ('balanced'), its square root, or explicit.

    Args:
      spec: ``""``, ``"balanced"``, ``"sqrt"`` or ``name=weight`` pairs (unnamed classes weigh 1).
      labels: the class names.
      counts: ``[num_labels]`` training rows of each class (the named schemes use them).

    Returns:
      float32 ``[num_labels]``.

    Raises:
      ConfigError: for a malformed spec or one naming unknown labels.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if not spec:
        return np.ones(len(labels), np.float32)
    if spec in CLASS_WEIGHTING:
        # Classes absent from the data never weigh in a loss term; keep them at 1.
        balanced = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 1.0)
        return (balanced if spec == "balanced" else np.sqrt(balanced)).astype(np.float32)
    explicit = parse_class_weights(spec)
    unknown = sorted(set(explicit) - set(labels))
    if unknown:
        raise ConfigError(f"--class_weights names unknown labels {unknown}; labels are {list(labels)}")
    return np.array([explicit.get(name, 1.0) for name in labels], np.float32)


def make_batch(
    sequences: Sequence[Sequence[int]],
    targets: np.ndarray,
    weights: np.ndarray,
    *,
    rows: int,
    grid: ShapeGrid,
    pad_id: int,
    soft: np.ndarray | None = None,
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> Batch:
    """The padded batch of some training texts.

    Args:
      sequences: token ids of at most ``rows`` texts.
      targets: float32 ``[len(sequences), num_labels]`` the classes each text's label allows.
      weights: float32 ``[num_labels]`` class weights.
      rows: the batch's row count, the same for every step so the shape stays static.
      grid: picks the length bucket of the longest sequence.
      pad_id: the model's padding token id.
      soft: float32 ``[len(sequences), num_labels]`` teacher probabilities, or None without teachers.
      groups: ``(labels, known)``, each ``[len(sequences), categories]``: the texts' target groups and
        which of them their sources annotate; None without a target head in training.

    Returns:
      A :class:`Batch` of ``rows`` rows, ``length`` the bucket of the longest text.
    """
    length = grid.bucket_length(max(len(s) for s in sequences))
    ids, mask = pad_batch(sequences, rows, length, pad_id)
    n = len(sequences)
    padded, padded_soft = np.zeros((2, rows, targets.shape[1]), np.float32)
    padded[:n] = targets
    if soft is not None:
        padded_soft[:n] = soft
    row_weights = np.zeros(rows, np.float32)
    row_weights[:n] = (targets * weights).sum(axis=1) / targets.sum(axis=1)
    # Padding rows annotate nothing, so they add nothing to the target loss.
    labels, known = np.zeros((2, rows, 0 if groups is None else groups[0].shape[1]), np.float32)
    if groups is not None:
        labels[:n], known[:n] = groups
    return Batch(
        ids=ids, mask=mask, targets=padded, weights=row_weights, soft=padded_soft, groups=labels, groups_known=known
    )
