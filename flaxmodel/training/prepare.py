"""Everything a run builds before its first step: data, tokens, model, optimizer and initial state.

:func:`prepare` checks the settings and the run directory first, so a bad
flag or a mismatched restart fails before any data is read, then reads and
tokenizes the data, loads the starting checkpoint and splits its parameters
into trained and frozen ones.  With teachers it also scores the sampled rows,
the one thing it writes to the run directory (a cache a rerun reuses).  What
it returns stays fixed for the whole run; only the
:class:`~flaxmodel.training.state.TrainState` changes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flaxmodel.ckpts.adapters import base_reference, is_adapter_folder
from flaxmodel.ckpts.default_model import minilm_path, model_folder
from flaxmodel.ckpts.loader import load_checkpoint
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.model import Params, TargetHead
from flaxmodel.errors import ConfigError
from flaxmodel.inference.planner import ShapeGrid, grid_for
from flaxmodel.inference.preprocessing import Preprocessing
from flaxmodel.inference.tokenizer import Tokenizer
from flaxmodel.training.batches import class_weights, epoch_batches
from flaxmodel.training.config import TrainConfig
from flaxmodel.training.data import read_labeled
from flaxmodel.training.mixture import SourceSet, epoch_rows, load_mixture, read_mixture, single_source
from flaxmodel.training.mixture_file import Mixture
from flaxmodel.training.provenance import check_teachers, files_record, mixture_record, teachers_record
from flaxmodel.training.run_dir import check_run_dir
from flaxmodel.training.state import StepSpec, TrainState, initial_state, split_trainable
from flaxmodel.training.target_data import CATEGORIES, read_target_sets
from flaxmodel.training.teachers import CACHE_DIR, cached_probabilities, load_teachers

log = logging.getLogger(__name__)

# Hidden units of the target head joint training adds: the shipped head's (flaxmodel.training.targets).
JOINT_HEAD_HIDDEN = 256
# Training rows' target groups and which of them their sources annotate: float32 (labels, known).
Groups = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The fixed inputs of one run.

    Attributes:
      config: the run's settings.
      run_dir: absolute path of ``--output``.
      model_config: the model's config (labels included).
      tokenizer: the tokenizer, truncating at the run's ``max_length``.
      train_ids: token ids of each training text (a mixture's sources one after another).
      lengths: int ``[n_train]`` their token counts.
      train_targets: float32 ``[n_train, num_labels]`` the classes each row's label allows.
      train_soft: float32 ``[n_train, num_labels]`` the teachers' mean probabilities (NaN on rows no
        epoch samples), cached in the run directory; None without ``--teachers``.
      train_groups: with ``--target_weight``, float32 ``(labels, known)`` ``[n_train, categories]``: each
        row's target groups and which of them its source annotates; else None.
      source_sizes, source_weights: training rows and sampling weight of each source (one source of
        weight 1 without a mixture); see :func:`~flaxmodel.training.mixture.epoch_rows`.
      weights: float32 ``[num_labels]`` class weights of the loss.
      val_sets: per validation set (one per mixture source with validation rows, or ``--val``),
        the set and its token ids; empty without validation data.
      frozen: the parameters that do not train (empty without LoRA).
      spec: what the compiled steps depend on.
      grid: shapes of training batches (rows: ``batch_size``).
      eval_grid: shapes of validation batches (rows up to ``eval_batch_size``).
      steps_per_epoch: optimizer steps in one pass over the training data.
      base: with LoRA, the base-encoder reference exported adapters record.
      initial: the state at step 0.
      training_data: what exported folders record of their data (:mod:`flaxmodel.training.provenance`).
    """

    config: TrainConfig
    run_dir: str
    model_config: EncoderConfig
    tokenizer: Tokenizer
    train_ids: list[list[int]]
    lengths: np.ndarray
    train_targets: np.ndarray
    train_soft: np.ndarray | None
    train_groups: Groups | None
    source_sizes: tuple[int, ...]
    source_weights: tuple[float, ...]
    weights: np.ndarray
    val_sets: tuple[tuple[SourceSet, list[list[int]]], ...]
    frozen: Params
    spec: StepSpec
    grid: ShapeGrid
    eval_grid: ShapeGrid
    steps_per_epoch: int
    base: dict[str, Any] | None
    initial: TrainState
    training_data: dict[str, Any]

    @property
    def total_steps(self) -> int:
        return self.spec.total_steps

    def epoch_rows(self, epoch: int) -> np.ndarray:
        """The training rows epoch ``epoch`` (from 0) samples."""
        return epoch_rows(self.source_sizes, self.source_weights, self.config.seed, epoch)


def _start_folder(config: TrainConfig) -> tuple[str, dict[str, Any] | None]:
    """The checkpoint folder to start from and, with LoRA, the reference to it adapters record."""
    folder = model_folder(config.model) if config.model else minilm_path()
    if not config.lora:
        return folder, None
    if is_adapter_folder(folder):
        raise ConfigError(
            f"--model {folder} is a LoRA adapter; LoRA needs a full checkpoint as its base "
            "(fine-tune the adapter's merged model fully with --lora_rank 0, or start from its base)"
        )
    return folder, base_reference(folder)


def _group_annotations(mixture: Mixture, root: str, train: list[SourceSet]) -> Groups:
    """Each training row's target groups ``(labels, known)``, float32 ``[n_train, categories]``.

    Rows are matched to the mixture's target annotations by source and text; a text annotated twice keeps
    the cells both agree on, and a row without annotations is unknown in every category.
    """
    found: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for annotated in read_target_sets(mixture, root)[0]:
        for text, labels, known in zip(annotated.texts, annotated.labels, annotated.known):
            key = (annotated.name, text)
            if key in found:
                known = known & found[key][1] & (labels == found[key][0])
            found[key] = (labels, known)
    rows = [found.get((s.name, text)) for s in train for text in s.texts]
    labels = np.zeros((len(rows), len(CATEGORIES)), np.float32)
    known = np.zeros_like(labels)
    for i, row in enumerate(rows):
        if row is not None:
            labels[i], known[i] = row
    log.info("target groups: %d of %d training rows annotated", int(known.any(axis=1).sum()), len(rows))
    return labels, known


def _read_data(
    config: TrainConfig,
) -> tuple[tuple[str, ...], list[SourceSet], list[float], list[SourceSet], dict, Groups | None]:
    """``(classes, training sets, their sampling weights (``--epoch_share`` applied), validation sets,
    training_data.json record, training rows' target groups or None)``."""
    if config.mixture is not None:
        mixture = load_mixture(config.mixture)
        check_teachers(mixture.use, config.teachers or ())
        train, val = read_mixture(mixture, config.data_root)
        weights = [s.weight * config.epoch_share for s in mixture.sources if not s.evaluate_only]
        groups = _group_annotations(mixture, config.data_root, train) if config.target_weight else None
        return mixture.classes, train, weights, val, mixture_record(mixture), groups
    fields = dict(text_field=config.text_field, label_field=config.label_field, format=config.format)
    train = read_labeled(config.train, labels=config.labels, **fields)
    # Validation labels map onto the training data's names, ids included.
    val = [single_source(read_labeled(config.val, labels=train.labels, **fields), "val")] if config.val else []
    weights = [config.epoch_share]
    return train.labels, [single_source(train, "train")], weights, val, files_record(config.train), None


def _step_spec(config: TrainConfig, model: EncoderConfig, total_steps: int) -> StepSpec:
    return StepSpec(
        model_config=model,
        lora=config.lora,
        dtype=config.dtype,
        learning_rate=config.learning_rate,
        warmup_steps=int(config.warmup_ratio * total_steps),
        total_steps=total_steps,
        weight_decay=config.weight_decay,
        clip_norm=config.clip_norm,
        distill_weight=config.distill_weight if config.teachers else 0.0,
        target_weight=config.target_weight,
    )


def prepare(config: TrainConfig) -> Prepared:
    """Checks the settings and builds everything a run needs before its first step.

    Args:
      config: the run's settings.

    Returns:
      The run's :class:`Prepared` inputs; nothing is written to the run directory but the teachers' cache.

    Raises:
      ConfigError, DataError, CheckpointError: for bad settings, data or checkpoints.
    """
    config.validate()
    run_dir = os.path.abspath(config.output)
    check_run_dir(run_dir, config)
    folder, base = _start_folder(config)
    classes, train_sets, source_weights, val_sets, training_data, groups = _read_data(config)
    checkpoint = load_checkpoint(folder, labels=classes, seed=config.seed, target_head=False)
    model, params = checkpoint.config, checkpoint.params
    if model.multi_label:
        raise ConfigError(f"{folder} is a multi-label model; training supports single-label classification")
    if groups is not None:
        model = model.with_targets(CATEGORIES, JOINT_HEAD_HIDDEN)
        head_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
        head = TargetHead(model).init(head_key, jnp.zeros((1, 1, model.hidden_size)))["params"]
        params = {**params, "target_head": head}
    steps = Preprocessing(config.preprocessing) if config.preprocessing else None
    tokenizer = Tokenizer.from_folder(folder, min(config.max_length, model.max_length), steps)
    teachers = load_teachers(config.teachers, classes, tokenizer.max_length) if config.teachers else None
    train_texts = [t for s in train_sets for t in s.texts]
    train_ids = tokenizer.encode(train_texts)
    lengths = np.array([len(s) for s in train_ids])
    targets = np.concatenate([s.masks for s in train_sets])
    sizes = tuple(len(s) for s in train_sets)
    # Every epoch samples as many rows and its pools have fixed sizes, so every epoch has as many batches.
    first = epoch_rows(sizes, source_weights, config.seed, 0)
    steps_per_epoch = len(epoch_batches(lengths, config.batch_size, config.seed, 0, rows=first))
    spec = _step_spec(config, model, steps_per_epoch * config.epochs)
    soft = None
    if teachers:
        training_data = {**training_data, "teachers": teachers_record(config.teachers, teachers, config.distill_weight)}
        sampled = np.concatenate([epoch_rows(sizes, source_weights, config.seed, e) for e in range(config.epochs)])
        soft = cached_probabilities(teachers, train_texts, sampled, os.path.join(run_dir, CACHE_DIR))
    dropout_key, adapter_key = jax.random.split(jax.random.PRNGKey(config.seed))
    trainable, frozen = split_trainable(params, model, config.lora, config.train_norms, adapter_key)
    return Prepared(
        config=config,
        run_dir=run_dir,
        model_config=model,
        tokenizer=tokenizer,
        train_ids=train_ids,
        lengths=lengths,
        train_targets=targets,
        train_soft=soft,
        train_groups=groups,
        source_sizes=sizes,
        source_weights=tuple(source_weights),
        # Class counts for the weighting schemes: rows whose label allows one class only.
        weights=class_weights(config.class_weights, classes, targets[targets.sum(axis=1) == 1].sum(axis=0)),
        val_sets=tuple((v, tokenizer.encode(v.texts)) for v in val_sets),
        frozen=jax.tree_util.tree_map(jnp.asarray, frozen),
        spec=spec,
        grid=grid_for(model, tokenizer.max_length, jax.default_backend(), batch_size=config.batch_size),
        eval_grid=grid_for(model, tokenizer.max_length, jax.default_backend(), batch_size=config.eval_batch_size),
        steps_per_epoch=steps_per_epoch,
        base=base,
        training_data=training_data,
        initial=initial_state(trainable, dropout_key, spec),
    )
