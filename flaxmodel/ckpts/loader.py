"""One entry point for any model folder: a Hugging Face checkpoint or a LoRA adapter folder.

Sits above both readers so neither imports the other: :mod:`~flaxmodel.ckpts.checkpoint`
reads plain folders, :mod:`~flaxmodel.ckpts.adapters` builds on it for adapters.  Either
kind may carry a target-group head (:mod:`~flaxmodel.ckpts.target_head`), added here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Sequence

from flaxmodel.ckpts import files
from flaxmodel.ckpts.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    is_adapter_folder,
    load_adapter_checkpoint,
    read_adapter_config,
    resolve_base,
)
from flaxmodel.ckpts.checkpoint import WEIGHT_FILES, Checkpoint, load_config, load_hf_checkpoint
from flaxmodel.ckpts.target_head import (
    TARGET_HEAD_CONFIG,
    TARGET_HEAD_WEIGHTS,
    read_target_head,
    read_target_head_spec,
)
from flaxmodel.core.config import EncoderConfig
from flaxmodel.errors import CheckpointError

# Length of the weights hash in the ``model`` column: 64 bits tell any two checkpoints apart.
HASH_CHARS = 16


def load_checkpoint(
    folder: str, *, labels: Sequence[str] | None = None, seed: int = 0, target_head: bool = True
) -> Checkpoint:
    """Config and float32 parameters of a checkpoint or adapter folder (local or on a Beam filesystem).

    Args:
      folder: a Hugging Face model folder, or an adapter folder (``adapter_config.json``),
        which loads as its base encoder with the adapters merged in.
      labels: the classes of a freshly initialised head when the folder holds only a base
        encoder; for a folder with a trained head it must equal its ``id2label`` names.
      seed: initialises that fresh head.
      target_head: False leaves out the folder's target-group head, as training does: it was
        fit to the encoder that training changes.

    Returns:
      The :class:`~flaxmodel.ckpts.checkpoint.Checkpoint` (config, params, source); with a
      target head, ``config.targets`` names its categories and ``params["target_head"]`` holds it.
    """
    folder = _check_folder(folder)
    if is_adapter_folder(folder):
        checkpoint = load_adapter_checkpoint(folder, labels=labels)
    else:
        checkpoint = load_hf_checkpoint(folder, labels=labels, seed=seed)
    spec = read_target_head_spec(folder) if target_head else None
    if spec is None:
        return checkpoint
    config = checkpoint.config.with_targets(spec.categories, spec.hidden_size)
    params = {**checkpoint.params, "target_head": read_target_head(folder, spec, config.hidden_size)}
    return dataclasses.replace(checkpoint, config=config, params=params)


def _check_folder(folder: str) -> str:
    folder = str(folder)
    if not files.is_dir(folder):
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    return folder


def read_model_config(folder: str, *, labels: Sequence[str] | None = None) -> EncoderConfig:
    """The config a folder's model runs with, from its files alone (no weights are read).

    Args:
      folder: as for :func:`load_checkpoint`; an adapter folder's base encoder must be
        installed and be the one it was trained on.
      labels: the classes of a fresh head (see :func:`load_checkpoint`).

    Returns:
      Its :class:`~flaxmodel.core.config.EncoderConfig`.
    """
    folder = _check_folder(folder)
    if is_adapter_folder(folder):
        _, base = read_adapter_config(folder)
        resolve_base(base, files.join(folder, ADAPTER_CONFIG))
    config = load_config(folder)
    spec = read_target_head_spec(folder)
    if spec is not None:
        config = config.with_targets(spec.categories, spec.hidden_size)
    return config if labels is None else config.with_labels(tuple(labels))


def weights_hash(folder: str, *, labels: Sequence[str] | None = None) -> str:
    """A short SHA-256 of the files a folder's weights come from, telling which weights labelled a row.

    An adapter folder's hash covers its own tensors and its base encoder's hash (recorded in
    ``adapter_config.json`` when it was trained); a plain folder's, every weight file it loads
    from (the shards of a sharded checkpoint included).  ``labels`` of a fresh head enter the
    hash, since they shape it, and so do a target head's tensors and categories.
    """
    folder = _check_folder(folder)
    digest = hashlib.sha256()
    if is_adapter_folder(folder):
        _, base = read_adapter_config(folder)
        digest.update(json.dumps(base, sort_keys=True).encode())
        digest.update(files.read_bytes(files.join(folder, ADAPTER_WEIGHTS)))
    else:
        for name in _weight_files(folder):
            digest.update(files.read_bytes(files.join(folder, name)))
    if labels is not None:
        digest.update(json.dumps(list(labels)).encode())
    spec = read_target_head_spec(folder)
    if spec is not None:
        digest.update(json.dumps([TARGET_HEAD_CONFIG, list(spec.categories)]).encode())
        digest.update(files.read_bytes(files.join(folder, TARGET_HEAD_WEIGHTS)))
    return digest.hexdigest()[:HASH_CHARS]


def _weight_files(folder: str) -> list[str]:
    """The files :func:`~flaxmodel.ckpts.checkpoint.read_state_dict` reads, in the order it reads them."""
    for name in WEIGHT_FILES:
        path = files.join(folder, name)
        if not files.exists(path):
            continue
        if name.endswith(".index.json"):
            try:
                shards = sorted(set(json.loads(files.read_bytes(path))["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise CheckpointError(f"{path}: not a valid shard index ({err})") from None
            return [name, *shards]
        return [name]
    raise CheckpointError(f"{folder}: no weights; expected one of {', '.join(WEIGHT_FILES)}")
