"""LoRA adapter folders: writing them, reading them back, and finding their base encoder.

An adapter folder holds ``adapter_config.json`` (LoRA hyper-parameters and the
identity of the base encoder: an installed package or a path, with a hash of
its weights), ``adapter_model.safetensors`` (the LoRA factors in the PEFT layout
``<module>.lora_A.weight [rank, in]`` / ``lora_B.weight [out, rank]`` plus every
tensor training changed besides them: head, layer norms), ``config.json`` with
``id2label`` and the tokenizer.  :func:`load_adapter_checkpoint` turns it back
into a plain :class:`~flaxmodel.ckpts.checkpoint.Checkpoint` with the adapters
merged in once, so inference costs what the base model costs.  The LoRA math
itself is :mod:`flaxmodel.core.lora`; this module only does the I/O around it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from flax import traverse_util

from flaxmodel.ckpts import files
from flaxmodel.ckpts.checkpoint import (
    CONFIG_FILE,
    WEIGHT_FILES,
    Checkpoint,
    check_labels,
    load_config,
    params_from_state_dict,
    parse_safetensors,
    read_state_dict,
    tensor_leaves,
)
from flaxmodel.ckpts.default_model import MINILM_PACKAGE, MINILM_WEIGHTS_SHA256, minilm_path
from flaxmodel.ckpts.mpnet_base import MPNET_PACKAGE, mpnet_path
from flaxmodel.ckpts.mpnet_base import WEIGHTS_SHA256 as MPNET_WEIGHTS_SHA256
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.lora import Adapters, LoraConfig, merge
from flaxmodel.core.model import ARCHITECTURES, Params
from flaxmodel.errors import CheckpointError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FORMAT = "flaxmodel-lora"
# Base encoders that install as packages, by the sha256 of their weights: an adapter over one names the
# package rather than this machine's path, so it loads wherever the package is installed.
PACKAGED_BASES = {MINILM_WEIGHTS_SHA256: MINILM_PACKAGE, MPNET_WEIGHTS_SHA256: MPNET_PACKAGE}
_PACKAGE_FOLDERS: dict[str, Callable[[], str]] = {MINILM_PACKAGE: minilm_path, MPNET_PACKAGE: mpnet_path}


def _task_names(config: EncoderConfig) -> dict[tuple[str, ...], tuple[str, str]]:
    """The name table as the upstream task model spells it: adapters always use that layout."""
    arch = ARCHITECTURES[config.architecture]
    return arch.tensor_names(config, arch.checkpoint_prefix)


def adapter_state_dict(adapters: Adapters, trained: Params, config: EncoderConfig) -> dict[str, np.ndarray]:
    """Upstream-named tensors of the adapters (PEFT layout) and of the other trained parameters.

    Args:
      adapters: ``{module path: {"lora_a": [in, rank], "lora_b": [rank, out]}}`` nested like the params.
      trained: the trained non-adapter parameters (head, optionally norms), nested like the params.
      config: the model's config, which decides the upstream names.

    Returns:
      Tensor name -> float32 array, as ``adapter_model.safetensors`` stores them.
    """
    names = _task_names(config)
    state: dict[str, np.ndarray] = {}
    for path, value in traverse_util.flatten_dict(adapters).items():
        factor = "lora_A" if path[-1] == "lora_a" else "lora_B"
        state[f"{names[path[:-1]][0]}.{factor}.weight"] = np.ascontiguousarray(np.asarray(value, np.float32).T)
    for path, value in traverse_util.flatten_dict(trained).items():
        stem, kind = names[path[:-1]]
        key, transpose = next((k, tr) for k, leaf, tr in tensor_leaves(stem, kind) if leaf == path[-1])
        value = np.asarray(value, np.float32)
        state[key] = np.ascontiguousarray(value.T if transpose else value)
    return state


def weights_digest(folder: str) -> str:
    """SHA-256 of a checkpoint's weight file, identifying the exact base encoder."""
    for name in WEIGHT_FILES:
        path = files.join(folder, name)
        if files.exists(path):
            return hashlib.sha256(files.read_bytes(path)).hexdigest()
    raise CheckpointError(f"{folder}: no weight file ({', '.join(WEIGHT_FILES)}) to identify the base encoder by")


def base_reference(base_folder: str) -> dict[str, Any]:
    """How an adapter names its base: its package if it is a packaged encoder, else its path; plus its hash.

    Args:
      base_folder: the base encoder's checkpoint folder, local or on a Beam filesystem.

    Returns:
      ``{"package": name, "sha256": digest}`` for an encoder in :data:`PACKAGED_BASES`, else
      ``{"path": absolute path or URL, "sha256": digest}``.
    """
    digest = weights_digest(base_folder)
    if digest in PACKAGED_BASES:
        return {"package": PACKAGED_BASES[digest], "sha256": digest}
    path = str(base_folder) if files.is_remote(str(base_folder)) else os.path.abspath(base_folder)
    return {"path": path, "sha256": digest}


def resolve_base(ref: Mapping[str, Any], source: str) -> str:
    """Folder of the base encoder an adapter config names; checks its weights hash."""
    if "package" in ref:
        if ref["package"] not in _PACKAGE_FOLDERS:
            raise CheckpointError(
                f"{source}: unknown base package {ref['package']!r}; known: {', '.join(_PACKAGE_FOLDERS)}"
            )
        folder = _PACKAGE_FOLDERS[ref["package"]]()
    elif "path" in ref:
        folder = str(ref["path"])
    else:
        raise CheckpointError(f"{source}: base_model must name a 'package' or a 'path'")
    expected = ref.get("sha256")
    if expected and weights_digest(folder) != expected:
        raise CheckpointError(
            f"{source}: the base encoder at {folder} is not the one this adapter was trained on "
            "(weights hash differs); install the original base or retrain the adapter"
        )
    return folder


def save_adapter(
    folder: str,
    *,
    adapters: Adapters,
    trained: Params,
    config: EncoderConfig,
    lora: LoraConfig,
    base: Mapping[str, Any],
) -> None:
    """Writes ``adapter_config.json``, ``adapter_model.safetensors`` and ``config.json``."""
    write_adapter(folder, adapter_state_dict(adapters, trained, config), config=config, lora=lora, base=base)


def write_adapter(
    folder: str, state: Mapping[str, np.ndarray], *, config: EncoderConfig, lora: LoraConfig, base: Mapping[str, Any]
) -> None:
    """Writes an adapter folder (tokenizer aside) from its upstream-named tensors.

    Args:
      folder: the target folder, local or on a Beam filesystem.
      state: tensor name -> array, as :func:`adapter_state_dict` names them.
      config: the model's config (``id2label`` included), written as ``config.json``.
      lora: the LoRA settings the factors in ``state`` were made for.
      base: the base encoder's reference (see :func:`base_reference`).
    """
    from safetensors.numpy import save

    adapter_config = {
        "format": ADAPTER_FORMAT,
        "base_model": dict(base),
        "rank": lora.rank,
        "alpha": lora.alpha,
        "targets": list(lora.targets),
    }
    files.write_bytes(files.join(folder, ADAPTER_CONFIG), json.dumps(adapter_config, indent=2).encode())
    files.write_bytes(files.join(folder, CONFIG_FILE), json.dumps(config.to_hf_dict(), indent=2).encode())
    files.write_bytes(files.join(folder, ADAPTER_WEIGHTS), save(dict(state), metadata={"format": "pt"}))


def is_adapter_folder(folder: str) -> bool:
    return files.exists(files.join(folder, ADAPTER_CONFIG))


def read_adapter_config(folder: str) -> tuple[LoraConfig, dict[str, Any]]:
    """The LoRA settings and the base reference of an adapter folder."""
    path = files.join(folder, ADAPTER_CONFIG)
    try:
        raw = json.loads(files.read_bytes(path))
        if raw.get("format") != ADAPTER_FORMAT:
            raise CheckpointError(f"{path}: format is {raw.get('format')!r}, expected {ADAPTER_FORMAT!r}")
        lora = LoraConfig(rank=int(raw["rank"]), alpha=float(raw["alpha"]), targets=tuple(raw["targets"]))
        return lora, dict(raw["base_model"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: not a valid adapter config ({err!r})") from None


def _overlay(base: Mapping[str, np.ndarray], trained: Mapping[str, np.ndarray], config: EncoderConfig) -> dict:
    """The base's tensors with the trained ones on top, in the base's naming.

    Adapters name tensors as the upstream task model does (``bert.encoder...``);
    a bare base encoder omits that prefix, so it is stripped to match.  The
    base's pre-training heads are dropped: the adapter brings its own head.
    """
    arch = ARCHITECTURES[config.architecture]
    prefix = arch.detect_prefix(base)
    pretraining = arch.pretraining_keys(prefix)
    state = {k: v for k, v in base.items() if not k.startswith(pretraining)}
    for key, value in trained.items():
        if not prefix and key.startswith(arch.checkpoint_prefix):
            key = key[len(arch.checkpoint_prefix) :]
        state[key] = value
    return state


def _read_factors(factors: dict[str, np.ndarray], config: EncoderConfig, lora: LoraConfig, source: str) -> Adapters:
    """LoRA factors by module path from their PEFT-named tensors; every factor must be used."""
    adapters = {}
    for path, (stem, _) in _task_names(config).items():
        a, b = factors.pop(f"{stem}.lora_A.weight", None), factors.pop(f"{stem}.lora_B.weight", None)
        if a is None and b is None:
            continue
        if a is None or b is None or a.shape[0] != lora.rank or b.shape[1] != lora.rank:
            raise CheckpointError(f"{source}: incomplete or mis-shaped LoRA factors for {stem}")
        adapters[(*path, "lora_a")] = np.asarray(a, np.float32).T
        adapters[(*path, "lora_b")] = np.asarray(b, np.float32).T
    if factors:
        raise CheckpointError(f"{source}: LoRA factors for unknown modules: {sorted(factors)[:10]}")
    return traverse_util.unflatten_dict(adapters)


@dataclasses.dataclass(frozen=True)
class AdapterParts:
    """An adapter folder's contents, not merged into any base.

    Attributes:
      config: its ``config.json``.
      lora: rank, alpha and target modules.
      base: the base encoder's reference (``package`` or ``path``, ``sha256``).
      adapters: ``{module path: {"lora_a": [in, rank], "lora_b": [rank, out]}}``.
      trained: the other trained tensors (head, layer norms) by upstream name.
    """

    config: EncoderConfig
    lora: LoraConfig
    base: dict[str, Any]
    adapters: Adapters
    trained: dict[str, np.ndarray]


def read_adapter(folder: str) -> AdapterParts:
    """Reads an adapter folder's config, factors and trained tensors without touching its base."""
    lora, base = read_adapter_config(folder)
    config = load_config(folder)
    weights_path = files.join(folder, ADAPTER_WEIGHTS)
    if not files.exists(weights_path):
        raise CheckpointError(f"{folder}: no {ADAPTER_WEIGHTS}")
    saved = parse_safetensors(files.read_bytes(weights_path), weights_path)
    factors = {k: v for k, v in saved.items() if ".lora_A." in k or ".lora_B." in k}
    trained = {k: v for k, v in saved.items() if k not in factors}
    return AdapterParts(config, lora, base, _read_factors(factors, config, lora, weights_path), trained)


def load_adapter_checkpoint(folder: str, *, labels: Sequence[str] | None = None) -> Checkpoint:
    """The merged :class:`~flaxmodel.ckpts.checkpoint.Checkpoint` of an adapter folder."""
    parts = read_adapter(folder)
    config = parts.config
    check_labels(folder, config, labels)
    base_folder = resolve_base(parts.base, files.join(folder, ADAPTER_CONFIG))
    params, _ = params_from_state_dict(_overlay(read_state_dict(base_folder), parts.trained, config), config, source=folder)
    merged = merge(params, parts.adapters, parts.lora.scale)
    merged = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), merged)
    return Checkpoint(config=config, params=merged, source=folder, fresh_head=False)
