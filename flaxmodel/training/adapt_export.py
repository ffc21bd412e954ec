"""The adapted model as a normal model folder: one adapter over the starting model's base, and what travels with it.

Adapting trains LoRA factors on top of the starting model's merged weights.
When the starting model is itself an adapter folder (the bundled ones are),
its update ``s1 a1 b1`` and the new ``s2 a2 b2`` add up exactly to one adapter
of rank r1 + r2 (:func:`flaxmodel.core.lora.combine`), so the folder stays a few
megabytes over the same packaged base encoder; modules the new adapter leaves
alone get zero factors.  Otherwise the new adapter's base is the starting folder.
The starting model's preprocessing travels unchanged, and so does its target-group head unless the
user's rows re-fitted it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from flax import traverse_util

from flaxmodel.ckpts import files
from flaxmodel.ckpts.adapters import adapter_state_dict, base_reference, is_adapter_folder, read_adapter, write_adapter
from flaxmodel.ckpts.target_head import TARGET_HEAD_CONFIG, TARGET_HEAD_WEIGHTS, write_target_head
from flaxmodel.ckpts.thresholds import write_thresholds
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.lora import Adapters, LoraConfig, combine, target_paths
from flaxmodel.core.model import Params
from flaxmodel.inference.tokenizer import Tokenizer
from flaxmodel.training.export import write_staged
from flaxmodel.training.provenance import write_record


def _padded(new: Adapters, modules: list[tuple[str, ...]], rank: int, shapes: Mapping[tuple[str, ...], tuple[int, int]]) -> Adapters:
    """``new`` with zero factors of ``rank`` on every module of ``modules`` it does not adapt."""
    flat = dict(traverse_util.flatten_dict(new))
    for module in modules:
        if (*module, "lora_a") not in flat:
            fan_in, fan_out = shapes[module]
            flat[(*module, "lora_a")] = np.zeros((fan_in, rank), np.float32)
            flat[(*module, "lora_b")] = np.zeros((rank, fan_out), np.float32)
    return traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in flat.items()})


def adapter_over_base(
    start_folder: str, full_params: Params, new: Adapters, new_lora: LoraConfig, trained: Params, config: EncoderConfig
) -> tuple[dict[str, np.ndarray], LoraConfig, dict[str, Any]]:
    """The folder's adapter: upstream-named tensors, its LoRA settings and its base reference.

    Args:
      start_folder: the starting model's folder.
      full_params: the starting model's merged parameters (for the shapes of unadapted modules).
      new: the adapters adapting trained, ``{module path: {"lora_a": [in, r2], "lora_b": [r2, out]}}``.
      new_lora: their rank, alpha and target modules.
      trained: the other tensors adapting trained (the head), nested like the params.
      config: the adapted model's config.
    """
    flat = traverse_util.flatten_dict(full_params)
    shapes = {path[:-1]: value.shape for path, value in flat.items() if path[-1] == "kernel"}
    if not is_adapter_folder(start_folder):
        modules = target_paths(full_params, new_lora)
        state = adapter_state_dict(_padded(new, modules, new_lora.rank, shapes), trained, config)
        return state, new_lora, base_reference(start_folder)
    parts = read_adapter(start_folder)
    # Both adapters over the modules either adapts, zeros where one does not.
    modules = sorted({path[:-1] for a in (parts.adapters, new) for path in traverse_util.flatten_dict(a)})
    old = _padded(parts.adapters, modules, parts.lora.rank, shapes)
    combined = combine([old, _padded(new, modules, new_lora.rank, shapes)], [parts.lora.scale, new_lora.scale], [1.0, 1.0])
    rank = parts.lora.rank + new_lora.rank
    # The start's own trained tensors (its head, its norms), with what adapting trained on top.
    state = {**parts.trained, **adapter_state_dict(combined, trained, config)}
    targets = tuple(dict.fromkeys(parts.lora.targets + new_lora.targets))
    return state, LoraConfig(rank=rank, alpha=float(rank), targets=targets), parts.base


def export_adapted(
    folder: str,
    *,
    start_folder: str,
    adapter: tuple[dict[str, np.ndarray], LoraConfig, dict[str, Any]],
    config: EncoderConfig,
    tokenizer: Tokenizer,
    thresholds: tuple[Mapping[str, float], Mapping[str, Any]],
    training_data: Mapping[str, Any],
    extra_files: Mapping[str, bytes],
    target_head: tuple[tuple[str, ...], Any, Mapping[str, float], Mapping[str, Any]] | None = None,
) -> str:
    """Writes the adapted model folder whole (see :func:`~flaxmodel.training.export.write_staged`).

    Args:
      folder: the target, local or on a Beam filesystem.
      start_folder: the starting model, whose target head (if any) is copied.
      adapter: :func:`adapter_over_base`'s result.
      config: the adapted model's config (its classes).
      tokenizer: written with its preprocessing.
      thresholds: ``(class -> threshold, how they were chosen)`` for ``thresholds.json``.
      training_data: ``training_data.json``.
      extra_files: other files by name (the report, the card).
      target_head: a re-fitted target head, ``(categories, params, thresholds, how)`` for
        :func:`~flaxmodel.ckpts.target_head.write_target_head`; None copies the starting model's, if any.

    Returns:
      ``folder``.
    """
    state, lora, base = adapter

    def write(target: str) -> None:
        write_adapter(target, state, config=config, lora=lora, base=base)
        tokenizer.save(target)
        if target_head is not None:
            write_target_head(target, *target_head)
        for name in (TARGET_HEAD_CONFIG, TARGET_HEAD_WEIGHTS) if target_head is None else ():
            if files.exists(files.join(start_folder, name)):
                files.write_bytes(files.join(target, name), files.read_bytes(files.join(start_folder, name)))
        write_thresholds(target, thresholds[0], thresholds[1])
        write_record(target, dict(training_data))
        for name, content in extra_files.items():
            files.write_bytes(files.join(target, name), content)

    return write_staged(folder, write)
