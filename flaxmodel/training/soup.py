"""Model soups: one model whose weights are the weighted average of several fine-tuned runs.

``python -m flaxmodel.training.soup --models runs/a/best,runs/b/best --output runs/soup [--weights 0.5,0.5]
[--max_rank 16] [--storage float16]``

Runs fine-tuned from the same base with the same seed (so the same fresh head
and adapter initialisation) and different data (mixture weights, templates)
end close enough in weight space that their average is a model of its own,
often better than each (Wortsman et al. 2022, "Model soups"), and it costs
what one model costs at inference.  Whether a soup is better is for the
validation data to say: score it like any model folder (``pipelines.evaluate``),
and choose its thresholds anew (:mod:`flaxmodel.training.thresholds`); an
ingredient's thresholds and target head are not carried over, and those of a
model folder the soup replaces are removed.

Adapter folders average exactly and stay small: the averaged update of each
adapted kernel is one adapter of the summed rank
(:func:`flaxmodel.core.lora.combine`), and the head and layer norms are
averaged tensor by tensor; ``--max_rank`` keeps the best approximation of
that update at a lower rank instead (truncated SVD, :func:`flaxmodel.core.lora.truncate`),
for a smaller folder; the share of the update kept is logged, and validation
decides whether what it drops matters.  ``--storage float16`` halves the file
again (tensors are merged in float32 at load time either way).  A single adapter
folder with either flag is shrunk the same way, alone.  Full checkpoints average every tensor.  The
ingredients must share the base encoder, the labels, the adapted modules and
the tokenizer.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Sequence

import jax
import numpy as np

from flaxmodel.ckpts import files
from flaxmodel.ckpts.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    adapter_state_dict,
    is_adapter_folder,
    read_adapter,
    write_adapter,
)
from flaxmodel.ckpts.checkpoint import WEIGHT_FILES, save_checkpoint
from flaxmodel.ckpts.loader import load_checkpoint
from flaxmodel.ckpts.target_head import TARGET_HEAD_CONFIG, TARGET_HEAD_WEIGHTS
from flaxmodel.ckpts.thresholds import THRESHOLDS_FILE
from flaxmodel.commands import run_command
from flaxmodel.core.lora import LoraConfig, combine, truncate
from flaxmodel.errors import ConfigError
from flaxmodel.flags import add_flags, flag, from_namespace
from flaxmodel.inference.preprocessing import (
    PREPROCESSING_FILE,
    Preprocessing,
    read_preprocessing,
    write_preprocessing,
)
from flaxmodel.inference.tokenizer import TOKENIZER_FILE
from flaxmodel.training.provenance import soup_record, write_record

logger = logging.getLogger(__name__)

PROG = "flaxmodel.training.soup"
# float16 keeps 11 significant bits: the rounding of a factor or head weight is far below what bfloat16
# inference (8 bits) already rounds, and the range (65504) holds any trained weight.
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclasses.dataclass(frozen=True)
class SoupSettings:
    """The soup command's flags."""

    models: tuple[str, ...] = flag(help="Comma-separated model folders (runs' best/ folders).")
    output: str = flag(help="Folder to write the soup to.")
    weights: tuple[str, ...] = flag((), "Comma-separated weight per model; default: uniform.")
    max_rank: int | None = flag(
        None, "Adapters only: truncate the soup to this rank (default: the ingredients' summed rank)."
    )
    storage: str = flag(
        "float32", "Adapters only: the dtype the folder stores its tensors in.", choices=tuple(STORAGE_DTYPES)
    )


def _weights(count: int, weights: Sequence[float] | None, shrinks: bool) -> list[float]:
    if count < 2 and not (count == 1 and shrinks):
        raise ConfigError(
            f"a soup needs at least two models, got {count} (one adapter folder with --max_rank or "
            "--storage float16 is shrunk alone)"
        )
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count or any(not w > 0 for w in weights):
        raise ConfigError(f"--weights needs one positive weight per model ({count}), got {list(weights)}")
    total = float(sum(weights))
    return [w / total for w in weights]


def _weighted(weights: Sequence[float], arrays: Sequence[np.ndarray]) -> np.ndarray:
    return sum(w * np.asarray(x, np.float32) for w, x in zip(weights, arrays))


def _tokenizer(folders: Sequence[str]) -> tuple[bytes, Preprocessing]:
    """The runs' one tokenizer file and preprocessing; runs that differ in either are not one model's."""
    texts = [files.read_bytes(files.join(f, TOKENIZER_FILE)) for f in folders]
    steps = [read_preprocessing(f) for f in folders]
    differing = [f for f, t, p in zip(folders, texts, steps) if t != texts[0] or p != steps[0]]
    if differing:
        raise ConfigError(
            f"{differing} have a different {TOKENIZER_FILE} or {PREPROCESSING_FILE} than {folders[0]}: "
            "not one model's runs"
        )
    return texts[0], steps[0]


def _make_folder(output: str, adapter: bool) -> None:
    """Creates ``output``, or clears what a model folder there held that would not describe the soup.

    The previous model's thresholds and target head were fitted to other weights, and the other kind's
    weight files would be loaded instead of the soup's (an adapter config wins over a full checkpoint).
    """
    if not files.is_remote(output):
        os.makedirs(output, exist_ok=True)
    other_kind = WEIGHT_FILES if adapter else (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
    for name in (THRESHOLDS_FILE, TARGET_HEAD_CONFIG, TARGET_HEAD_WEIGHTS, *other_kind):
        if files.delete(files.join(output, name)):
            logger.info("removed %s: it belonged to the folder's previous weights", files.join(output, name))


def _adapter_soup(
    folders: Sequence[str], weights: Sequence[float], output: str, max_rank: int | None, storage: str
) -> float:
    parts = [read_adapter(f) for f in folders]
    first = parts[0]
    for folder, part in zip(folders[1:], parts[1:]):
        if part.base.get("sha256") != first.base.get("sha256"):
            raise ConfigError(f"{folder} adapts another base encoder than {folders[0]}")
        if part.config.to_hf_dict() != first.config.to_hf_dict():
            raise ConfigError(f"{folder}: its config.json (labels, architecture) differs from {folders[0]}'s")
        if part.lora.targets != first.lora.targets or part.trained.keys() != first.trained.keys():
            raise ConfigError(f"{folder} trained other modules than {folders[0]} (LoRA targets or trained tensors)")
    adapters = combine([p.adapters for p in parts], [p.lora.scale for p in parts], list(weights))
    rank = sum(p.lora.rank for p in parts)
    kept = 1.0
    if max_rank is not None and max_rank < rank:
        adapters, kept = truncate(adapters, max_rank)
        rank = max_rank
    # alpha = rank: the combined factors already carry each ingredient's scale and weight.
    lora = LoraConfig(rank=rank, alpha=float(rank), targets=first.lora.targets)
    state = adapter_state_dict(adapters, {}, first.config)
    for name in first.trained:
        state[name] = _weighted(weights, [p.trained[name] for p in parts])
    state = {name: value.astype(STORAGE_DTYPES[storage]) for name, value in state.items()}
    _make_folder(output, adapter=True)
    write_adapter(output, state, config=first.config, lora=lora, base=first.base)
    return kept


def _full_soup(folders: Sequence[str], weights: Sequence[float], output: str) -> None:
    checkpoints = [load_checkpoint(f, target_head=False) for f in folders]
    for folder, checkpoint in zip(folders[1:], checkpoints[1:]):
        if checkpoint.config.to_hf_dict() != checkpoints[0].config.to_hf_dict():
            raise ConfigError(f"{folder}: its config.json (labels, architecture) differs from {folders[0]}'s")
    params = jax.tree_util.tree_map(lambda *leaves: _weighted(weights, leaves), *[c.params for c in checkpoints])
    _make_folder(output, adapter=False)
    save_checkpoint(output, params, checkpoints[0].config)


def make_soup(
    folders: Sequence[str],
    output: str,
    weights: Sequence[float] | None = None,
    max_rank: int | None = None,
    storage: str = "float32",
) -> str:
    """Writes the weighted average of several model folders as one model folder.

    Args:
      folders: two or more adapter folders, or two or more full checkpoint folders, from the same base;
        or one adapter folder, to shrink with ``max_rank`` or ``storage``.
      output: the folder to write (created; a model folder already there is replaced, its fitted files removed).
      weights: one positive weight per folder, normalised to sum to 1; default: uniform.
      max_rank: adapters only: keep the soup's update at this rank (truncated SVD, logged with the share
        of the update kept) instead of the ingredients' summed rank, for a smaller folder.
      storage: adapters only: ``float32`` or ``float16``, the dtype the folder's tensors are stored in.

    Returns:
      ``output``.

    Raises:
      ConfigError: before anything is written, when the folders are not runs of one model.
    """
    folders = [str(f) for f in folders]
    if storage not in STORAGE_DTYPES:
        raise ConfigError(f"storage must be one of {', '.join(STORAGE_DTYPES)}, got {storage!r}")
    weights = _weights(len(folders), weights, max_rank is not None or storage != "float32")
    missing = [f for f in folders if not files.is_dir(f)]
    if missing:
        raise ConfigError(f"{missing}: no such model folder")
    kinds = {is_adapter_folder(f) for f in folders}
    if len(kinds) != 1:
        raise ConfigError("mix of adapter folders and full checkpoints: soup adapters with adapters only")
    if (max_rank is not None or storage != "float32") and kinds != {True}:
        raise ConfigError("max_rank and storage apply to adapter folders only; full checkpoints average every tensor")
    if max_rank is not None and max_rank < 1:
        raise ConfigError(f"max_rank must be at least 1, got {max_rank}")
    tokenizer, preprocessing = _tokenizer(folders)
    if kinds == {True}:
        kept = _adapter_soup(folders, weights, output, max_rank, storage)
        if kept < 1.0:
            logger.info("truncated to rank %d: %.1f%% of the update's energy kept", max_rank, 100 * kept)
    else:
        _full_soup(folders, weights, output)
    files.write_bytes(files.join(output, TOKENIZER_FILE), tokenizer)
    write_preprocessing(output, preprocessing)
    write_record(output, soup_record(folders, weights))
    return output


def _soup(settings: SoupSettings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    try:
        weights = [float(w) for w in settings.weights] if settings.weights else None
    except ValueError:
        raise ConfigError(f"--weights must be numbers, got {','.join(settings.weights)!r}") from None
    make_soup(settings.models, settings.output, weights, settings.max_rank, settings.storage)
    count = len(settings.models)
    print(f"soup of {count} models -> {settings.output}; choose its thresholds on validation before use")


def main(argv: Sequence[str] | None = None) -> int:
    """Parses ``argv`` (default: ``sys.argv[1:]``) and writes the soup.

    Args:
      argv: the command line's arguments.

    Returns:
      The exit status: 0, or 2 after ``PROG: error: MESSAGE`` on stderr when the folders are not
      runs of one model or a flag cannot work.
    """
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_flags(parser, SoupSettings)
    settings = from_namespace(SoupSettings, parser.parse_args(argv))
    return run_command(PROG, lambda: _soup(settings))


if __name__ == "__main__":
    sys.exit(main())
