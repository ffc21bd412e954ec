"""One entry point for any model folder: a Hugging Face checkpoint or a LoRA adapter folder.

Sits above both readers so neither imports the other: :mod:`~flaxmodel.ckpts.checkpoint`
reads plain folders, :mod:`~flaxmodel.ckpts.adapters` builds on it for adapters.
"""

from __future__ import annotations

from typing import Sequence

from flaxmodel.ckpts import files
from flaxmodel.ckpts.adapters import is_adapter_folder, load_adapter_checkpoint
from flaxmodel.ckpts.checkpoint import Checkpoint, load_hf_checkpoint
from flaxmodel.errors import CheckpointError


def load_checkpoint(folder: str, *, labels: Sequence[str] | None = None, seed: int = 0) -> Checkpoint:
    """Config and float32 parameters of a checkpoint or adapter folder (local or on a Beam filesystem).

    Args:
      folder: a Hugging Face model folder, or an adapter folder (``adapter_config.json``),
        which loads as its base encoder with the adapters merged in.
      labels: the classes of a freshly initialised head when the folder holds only a base
        encoder; for a folder with a trained head it must equal its ``id2label`` names.
      seed: initialises that fresh head.

    Returns:
      The :class:`~flaxmodel.ckpts.checkpoint.Checkpoint` (config, params, source).
    """
    folder = str(folder)
    if not files.is_dir(folder):
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    if is_adapter_folder(folder):
        return load_adapter_checkpoint(folder, labels=labels)
    return load_hf_checkpoint(folder, labels=labels, seed=seed)
