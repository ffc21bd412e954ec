"""Distillation targets: the mean class probabilities of teacher models on a run's training texts.

Several runs of one recipe, averaged, tend to label better than any one of them,
but every member costs a forward pass per text.  A student trained towards the
ensemble's probabilities (``--teachers``, weighted by ``--distill_weight``
against the label loss) keeps the cost of one model.  The teachers'
probabilities also split what partial labels leave open ("not hate": offensive
or neither) the way the ensemble reads each text.  How the students measured is
the default model's card's ("Choosing this model").

A large teacher is slow on a CPU (all-mpnet-base-v2 labels tens of texts a
second on two cores), so :func:`cached_probabilities` scores only the rows the
run samples and keeps them in the run directory a chunk at a time: an
interrupted pass, or a resumed run, picks up what is already there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Sequence

import numpy as np

from flaxmodel.errors import ConfigError
from flaxmodel.inference.predictor import Classifier, load_classifier

log = logging.getLogger(__name__)

# Under the run directory: key.json (what the probabilities are of) and one part-NNNNN.npy per chunk.
CACHE_DIR = "teacher_probabilities"
CACHE_KEY = "key.json"
# Rows per cached chunk: at 30 texts/s a chunk is about two minutes of a large teacher's work.
CHUNK_ROWS = 4096


def load_teachers(folders: Sequence[str], classes: Sequence[str], max_length: int) -> list[Classifier]:
    """The teacher models, checked to predict the run's classes in its order.

    Args:
      folders: model folders (full checkpoints or adapters).
      classes: the run's class names, in id order.
      max_length: tokens per text, the student's: teachers read what it reads.

    Returns:
      One float32 classifier per folder: the targets must not depend on which path a CPU times fastest,
      so that a resumed run trains on the same ones.

    Raises:
      ConfigError: for a teacher whose labels differ from ``classes``.
    """
    teachers = []
    for folder in folders:
        teacher = load_classifier(folder, max_length=max_length, precision="float32")
        if teacher.labels != tuple(classes):
            raise ConfigError(
                f"--teachers {folder} predicts {list(teacher.labels)}, the run trains {list(classes)}: "
                "a teacher must predict the run's classes in the same order"
            )
        teachers.append(teacher)
    return teachers


def mean_probabilities(teachers: Sequence[Classifier], texts: Sequence[str]) -> np.ndarray:
    """The teachers' mean class probabilities of each text.

    Returns:
      float32 ``[len(texts), num_labels]``; each row sums to 1.
    """
    total = np.zeros((len(texts), len(teachers[0].labels)), np.float64)
    for i, teacher in enumerate(teachers, 1):
        log.info("teacher %d of %d: %s on %d texts", i, len(teachers), teacher.name, len(texts))
        total += teacher.predict_proba(texts)
    return (total / len(teachers)).astype(np.float32)


def _cache_key(teachers: Sequence[Classifier], texts: Sequence[str]) -> dict[str, object]:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return {
        "teachers": [t.identity for t in teachers],
        "max_length": [t.tokenizer.max_length for t in teachers],
        "preprocessing": [list(t.tokenizer.preprocessing.steps) for t in teachers],
        "rows": len(texts),
        "texts_sha256": digest.hexdigest(),
    }


def _open_cache(cache_dir: str, key: dict[str, object]) -> None:
    """Creates ``cache_dir`` for ``key``, emptying it when it holds another key's chunks."""
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, CACHE_KEY)
    if os.path.exists(path):
        with open(path) as f:
            if json.load(f) == key:
                return
        log.warning("%s holds other teachers' or texts' probabilities; computing them again", cache_dir)
        for name in os.listdir(cache_dir):
            os.remove(os.path.join(cache_dir, name))
    with open(path, "w") as f:
        json.dump(key, f, indent=2)


def cached_probabilities(
    teachers: Sequence[Classifier], texts: Sequence[str], rows: np.ndarray, cache_dir: str
) -> np.ndarray:
    """The teachers' mean class probabilities of the texts a run samples, cached chunk by chunk.

    Args:
      teachers: from :func:`load_teachers`.
      texts: every training text of the run.
      rows: int indices into ``texts`` of the rows any epoch samples.
      cache_dir: where the chunks are kept; chunks of other teachers or texts there are replaced.

    Returns:
      float32 ``[len(texts), num_labels]``: the mean probabilities on ``rows``, NaN on the rows no epoch
      samples (so a step that read one would fail loudly).
    """
    rows = np.unique(np.asarray(rows, np.int64))
    needed = [texts[i] for i in rows]
    _open_cache(cache_dir, _cache_key(teachers, needed))
    out = np.full((len(texts), len(teachers[0].labels)), np.nan, np.float32)
    for start in range(0, len(rows), CHUNK_ROWS):
        path = os.path.join(cache_dir, f"part-{start // CHUNK_ROWS:05d}.npy")
        if os.path.exists(path):
            chunk = np.load(path)
        else:
            log.info("teacher probabilities: rows %d-%d of %d", start, min(start + CHUNK_ROWS, len(rows)), len(rows))
            chunk = mean_probabilities(teachers, needed[start : start + CHUNK_ROWS])
            # Written whole, then renamed: an interrupted write leaves no chunk that looks complete.
            np.save(path + ".tmp.npy", chunk)
            os.replace(path + ".tmp.npy", path)
        out[rows[start : start + CHUNK_ROWS]] = chunk
    return out
