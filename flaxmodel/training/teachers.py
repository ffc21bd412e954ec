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
run samples and keeps each teacher's probabilities in the run directory a chunk
at a time: an interrupted pass, or a resumed run, picks up what is already
there, and a run that adds a teacher scores only the new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Sequence

import numpy as np

from flaxmodel.errors import ConfigError
from flaxmodel.inference.predictor import Classifier, load_classifier

log = logging.getLogger(__name__)

# Under the run directory, a folder per teacher: key.json (what the probabilities are of) and one
# part-NNNNN.npy per chunk.
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


def _folder_name(teacher: Classifier) -> str:
    """A file-system-safe folder name for one teacher's cached probabilities (``large_68aa...._float32``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", teacher.identity)


def _texts_sha256(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def _open_cache(cache_dir: str, key: dict[str, object]) -> None:
    """Creates ``cache_dir`` for ``key``, emptying it when it holds another key's chunks."""
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, CACHE_KEY)
    if os.path.exists(path):
        with open(path) as f:
            if json.load(f) == key:
                return
        log.warning("%s holds other texts' probabilities; computing them again", cache_dir)
        for name in os.listdir(cache_dir):
            os.remove(os.path.join(cache_dir, name))
    with open(path, "w") as f:
        json.dump(key, f, indent=2)


def _teacher_probabilities(
    teacher: Classifier, texts: Sequence[str], texts_sha256: str, cache_dir: str
) -> np.ndarray:
    """One teacher's class probabilities of ``texts``, read from or added to its cache chunk by chunk."""
    key = {
        "teacher": teacher.identity,
        "max_length": teacher.tokenizer.max_length,
        "preprocessing": list(teacher.tokenizer.preprocessing.steps),
        "rows": len(texts),
        "texts_sha256": texts_sha256,
    }
    _open_cache(cache_dir, key)
    chunks = []
    for start in range(0, len(texts), CHUNK_ROWS):
        path = os.path.join(cache_dir, f"part-{start // CHUNK_ROWS:05d}.npy")
        if os.path.exists(path):
            chunks.append(np.load(path))
            continue
        end = min(start + CHUNK_ROWS, len(texts))
        log.info("teacher %s: probabilities of rows %d-%d of %d", teacher.name, start, end, len(texts))
        chunk = teacher.predict_proba(texts[start:end]).astype(np.float32)
        # Written whole, then renamed: an interrupted write leaves no chunk that looks complete.
        np.save(path + ".tmp.npy", chunk)
        os.replace(path + ".tmp.npy", path)
        chunks.append(chunk)
    return np.concatenate(chunks)


def cached_probabilities(
    teachers: Sequence[Classifier], texts: Sequence[str], rows: np.ndarray, cache_dir: str
) -> np.ndarray:
    """The teachers' mean class probabilities of the texts a run samples, cached per teacher and chunk.

    Each teacher's probabilities have a folder of their own under ``cache_dir``, named by the teacher's
    identity (its weights' hash and precision), so a run with another set of teachers reuses those it
    shares with an earlier run whose cache it starts from.

    Args:
      teachers: from :func:`load_teachers`.
      texts: every training text of the run.
      rows: int indices into ``texts`` of the rows any epoch samples.
      cache_dir: where the teachers' folders are kept; a folder's chunks of other texts are replaced.

    Returns:
      float32 ``[len(texts), num_labels]``: the mean probabilities on ``rows``, NaN on the rows no epoch
      samples (so a step that read one would fail loudly).
    """
    rows = np.unique(np.asarray(rows, np.int64))
    needed = [texts[i] for i in rows]
    texts_sha256 = _texts_sha256(needed)
    total = np.zeros((len(rows), len(teachers[0].labels)), np.float64)
    for teacher in teachers:
        total += _teacher_probabilities(teacher, needed, texts_sha256, os.path.join(cache_dir, _folder_name(teacher)))
    out = np.full((len(texts), len(teachers[0].labels)), np.nan, np.float32)
    out[rows] = (total / len(teachers)).astype(np.float32)
    return out
