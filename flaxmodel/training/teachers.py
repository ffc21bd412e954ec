"""Distillation targets: the mean class probabilities of teacher models on a run's training texts.

Several runs of one recipe, averaged, tend to label better than any one of them,
but every member costs a forward pass per text.  A student trained towards the
ensemble's probabilities (``--teachers``, weighted by ``--distill_weight``
against the label loss) keeps the cost of one model.  The teachers'
probabilities also split what partial labels leave open ("not hate": offensive
or neither) the way the ensemble reads each text.  How the students measured is
the default model's card's ("Choosing this model").
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from flaxmodel.errors import ConfigError
from flaxmodel.inference.predictor import Classifier, load_classifier

log = logging.getLogger(__name__)


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
