"""Writing a trained model as a folder ``load_classifier`` (and the pipelines) load.

A fully fine-tuned model becomes an ordinary Hugging Face folder (``config.json``
with ``id2label``, ``model.safetensors``, ``tokenizer.json``).  A LoRA model
becomes an adapter folder (see :mod:`flaxmodel.ckpts.adapters`): only the
adapters and the other trained tensors, plus the identity of the base encoder,
so exporting a small encoder's adapter takes a few megabytes instead of the
whole model.  Local folders are written next to the target and renamed into
place, so a reader never sees a half-written export.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable, Mapping

from flaxmodel.ckpts import files
from flaxmodel.ckpts.adapters import save_adapter
from flaxmodel.ckpts.checkpoint import save_checkpoint
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.lora import Adapters, LoraConfig
from flaxmodel.core.model import Params
from flaxmodel.inference.tokenizer import Tokenizer
from flaxmodel.training.provenance import write_record


def _write(
    folder: str,
    *,
    config: EncoderConfig,
    params: Params,
    tokenizer: Tokenizer,
    adapters: Adapters | None,
    trained: Params | None,
    lora: LoraConfig | None,
    base: Mapping[str, Any] | None,
    training_data: Mapping[str, Any] | None,
) -> None:
    if lora is None:
        save_checkpoint(folder, params, config)
    else:
        save_adapter(folder, adapters=adapters or {}, trained=trained or {}, config=config, lora=lora, base=base or {})
    tokenizer.save(folder)
    if training_data is not None:
        write_record(folder, dict(training_data))


def export_model(
    folder: str,
    *,
    config: EncoderConfig,
    params: Params,
    tokenizer: Tokenizer,
    adapters: Adapters | None = None,
    trained: Params | None = None,
    lora: LoraConfig | None = None,
    base: Mapping[str, Any] | None = None,
    training_data: Mapping[str, Any] | None = None,
) -> str:
    """Writes a model folder, replacing any folder already there.

    Args:
      folder: the target, local or on a Beam filesystem.
      config: the model's config (``id2label`` included).
      params: the full parameter tree, adapters merged in; saved whole without ``lora``.
      tokenizer: its tokenizer is saved beside the weights.
      adapters: with ``lora``, the LoRA factors (``lora_a [in, rank]``, ``lora_b [rank, out]``).
      trained: with ``lora``, the other trained tensors (head, optionally norms).
      lora: the LoRA settings; None exports a full checkpoint.
      base: with ``lora``, the base encoder's reference
        (see :func:`flaxmodel.ckpts.adapters.base_reference`).
      training_data: what the model was trained on (``training_data.json``,
        :mod:`flaxmodel.training.provenance`); None writes no record.

    Returns:
      ``folder``.
    """
    parts = dict(config=config, params=params, tokenizer=tokenizer)
    parts.update(adapters=adapters, trained=trained, lora=lora, base=base, training_data=training_data)
    return write_staged(str(folder), lambda target: _write(target, **parts))


def write_staged(folder: str, write: Callable[[str], None]) -> str:
    """Runs ``write(target)`` so that ``folder`` appears whole or not at all, replacing any folder there.

    Args:
      folder: the model folder, local or on a Beam filesystem (written in place there: no rename exists).
      write: writes the folder's files into the folder it is given.

    Returns:
      ``folder``.
    """
    if files.is_remote(folder):
        write(folder)
        return folder
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        write(staging)
        # mkdtemp makes the folder private; an exported model is meant to be shared.
        os.chmod(staging, 0o755)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    return folder
