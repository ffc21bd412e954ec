"""A model's identity, resolved once from its folder's files: :class:`ModelRef` and :func:`resolve_model`.

A pipeline resolves ``--model`` once, at launch, into a :class:`ModelRef`: a
small frozen value that pickles into every step that needs the model (the
tokenizing step, the model handler, the output schema, the flag thresholds).
Making one reads only files (config, adapter config, weight files for their
hash, the tokenizer, ``thresholds.json``): no weights are parsed, nothing is
jitted and no device is touched, so the launcher can run anywhere and a bad
folder still fails before any data is read.  Workers load the weights from it
once per process (:func:`~flaxmodel.inference.predictor.load_classifier`), and
decide the precision they run in themselves; :meth:`ModelRef.identity` names
the result.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

from flaxmodel.ckpts.default_model import model_folder
from flaxmodel.ckpts.loader import read_model_config, weights_hash
from flaxmodel.ckpts.target_head import read_target_head_spec
from flaxmodel.ckpts.thresholds import recommended_thresholds
from flaxmodel.ckpts.training_data import RESEARCH, UNDECLARED, read_use
from flaxmodel.core.config import EncoderConfig
from flaxmodel.inference.preprocessing import read_preprocessing
from flaxmodel.inference.tokenizer import Tokenizer, tokenizer_for


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """Everything known about a model folder before its weights are loaded.

    Attributes:
      path: the folder, local or on a Beam filesystem (the default model's, resolved).
      name: the folder's last path component, the start of :meth:`identity`.
      config: its architecture and labels.
      max_length: tokens per window, special tokens included (at most what the
        position table allows).
      content_length: text tokens per window (``max_length`` less the special tokens).
      weights_hash: short SHA-256 of its weight files
        (:func:`~flaxmodel.ckpts.loader.weights_hash`) and of the preprocessing it declares, which
        is part of what the model computes.
      thresholds: ``(class, probability)`` pairs its ``thresholds.json`` recommends.
      head_labels: the labels asked for a folder without a trained head (a fresh
        one is initialised); None for a trained model.
      preprocessing: the text steps it declares (``preprocessing.json``), applied by its tokenizer.
      target_thresholds: ``(category, score)`` pairs of its target-group head
        (``target_head.json``), in the head's order; empty without one.
      use: what its training data allows (``training_data.json``): ``"default"``, ``"research"``
        (not for commercial use), or ``"undeclared"``.
    """

    path: str
    name: str
    config: EncoderConfig
    max_length: int
    content_length: int
    weights_hash: str
    thresholds: tuple[tuple[str, float], ...] = ()
    head_labels: tuple[str, ...] | None = None
    preprocessing: tuple[str, ...] = ()
    target_thresholds: tuple[tuple[str, float], ...] = ()
    use: str = UNDECLARED

    @property
    def research_only(self) -> bool:
        """Whether its training data allows research use only: no commercial use, no redistribution."""
        return self.use == RESEARCH

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    @property
    def targets(self) -> tuple[str, ...]:
        """The target-group head's categories (none without one)."""
        return self.config.targets

    def identity(self, precision: str) -> str:
        """The ``model`` column of rows this model labels in ``precision``: ``name@hash:precision``."""
        return f"{self.name}@{self.weights_hash}:{precision}"

    def tokenizer(self) -> Tokenizer:
        """This process's shared tokenizer of the model (built on first use)."""
        return tokenizer_for(self.path, self.max_length, self.preprocessing)


def resolve_model(
    model: str | ModelRef | None = None,
    *,
    max_length: int | None = None,
    labels: Sequence[str] | None = None,
) -> ModelRef:
    """The :class:`ModelRef` of a model folder; raises the loaders' errors, saying what to fix.

    Args:
      model: a Hugging Face or adapter folder (local or ``gs://``), a bundled model's name
        (``default``, ``large``), a ref (returned as it is), or None for the default model.
      max_length: caps the tokens per window (default: what the model's position table allows).
      labels: the classes of a fresh head when the folder holds only a base encoder.

    Returns:
      The reference.
    """
    if isinstance(model, ModelRef):
        return model
    path = model_folder(None if model is None else str(model))
    config = read_model_config(path, labels=labels)
    limit = config.max_length if max_length is None else min(max_length, config.max_length)
    digest = weights_hash(path, labels=labels)  # a folder without weights fails here, before its tokenizer
    steps = read_preprocessing(path).steps
    content_length = tokenizer_for(path, limit, steps).content_length
    head = read_target_head_spec(path)
    if steps:
        digest = hashlib.sha256(f"{digest}+{','.join(steps)}".encode()).hexdigest()[: len(digest)]
    return ModelRef(
        path=path,
        name=path.rstrip("/").rsplit("/", 1)[-1],
        config=config,
        max_length=limit,
        content_length=content_length,
        weights_hash=digest,
        thresholds=tuple(recommended_thresholds(path).items()),
        head_labels=tuple(labels) if labels is not None else None,
        preprocessing=steps,
        target_thresholds=tuple((c, head.thresholds[c]) for c in head.categories) if head else (),
        use=read_use(path),
    )
