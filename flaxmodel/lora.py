"""LoRA adapters as a pure transform of the parameter tree, and their saved form.

A low-rank adapter adds ``scale * a @ b`` (``a: [in, rank]``, ``b: [rank, out]``,
``scale = alpha / rank``) to the kernel of a chosen dense layer.  Nothing in the
model knows about it: :func:`merge` returns an ordinary parameter tree, so the
training loss differentiates through ``apply(merge(base, adapters), ...)`` with
the base frozen, and a loaded adapter is merged once into its base encoder so
inference costs exactly what the base model costs.

An adapter folder holds ``adapter_config.json`` (LoRA hyper-parameters and the
identity of the base encoder: an installed package or a path, with a hash of
its weights), ``adapter_model.safetensors`` (the LoRA factors in the PEFT layout
``<module>.lora_A.weight [rank, in]`` / ``lora_B.weight [out, rank]`` plus every
tensor training changed besides them: head, layer norms), ``config.json`` with
``id2label`` and the tokenizer.  :func:`load_adapter_checkpoint` turns it back
into a plain :class:`~flaxmodel.checkpoint.Checkpoint`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from flaxmodel import files
from flaxmodel.architecture import DENSE, NORM
from flaxmodel.config import ConfigError, EncoderConfig
from flaxmodel.model import ARCHITECTURES, Params

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FORMAT = "flaxmodel-lora"
# Dense modules of the shared encoder layer; "output" names both the attention
# and the feed-forward output projection, "attention.output" / "ffn.output" one of them.
DENSE_MODULES = ("query", "key", "value", "output", "intermediate")

Adapters = dict


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = DENSE_MODULES

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"LoRA rank must be at least 1, got {self.rank}")
        if not self.targets:
            raise ConfigError("LoRA needs at least one target module, e.g. query,value")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def _matches(path: tuple[str, ...], target: str) -> bool:
    parts = tuple(target.split("."))
    return path[-len(parts) :] == parts


def target_paths(params: Params, lora: LoraConfig) -> list[tuple[str, ...]]:
    """Module paths of the encoder's dense layers the adapters attach to."""
    modules = sorted(
        path[:-1]
        for path in traverse_util.flatten_dict(params)
        if path[0] == "encoder" and path[-1] == "kernel"
    )
    chosen = [m for m in modules if any(_matches(m, t) for t in lora.targets)]
    unknown = [t for t in lora.targets if not any(_matches(m, t) for m in modules)]
    if unknown:
        names = sorted({m[-1] for m in modules} | {".".join(m[-2:]) for m in modules})
        raise ConfigError(f"LoRA target modules {unknown} match no dense layer; choose from {names}")
    return chosen


def init_adapters(params: Params, lora: LoraConfig, rng: jax.Array) -> Adapters:
    """Fresh adapters: ``a`` Kaiming-uniform, ``b`` zero, so the merged model starts as the base."""
    flat = traverse_util.flatten_dict(params)
    out = {}
    for path, key in zip(target_paths(params, lora), jax.random.split(rng, len(target_paths(params, lora)))):
        fan_in, fan_out = flat[(*path, "kernel")].shape
        bound = float(np.sqrt(6.0 / fan_in))
        out[(*path, "lora_a")] = jax.random.uniform(key, (fan_in, lora.rank), jnp.float32, -bound, bound)
        out[(*path, "lora_b")] = jnp.zeros((lora.rank, fan_out), jnp.float32)
    return traverse_util.unflatten_dict(out)


def merge(params: Params, adapters: Adapters, scale: float) -> Params:
    """``params`` with ``scale * a @ b`` added to each adapted kernel; differentiable in both."""
    if not adapters:
        return params
    flat = dict(traverse_util.flatten_dict(params))
    factors = traverse_util.flatten_dict(adapters)
    for path, a in factors.items():
        if path[-1] != "lora_a":
            continue
        module = path[:-1]
        flat[(*module, "kernel")] = flat[(*module, "kernel")] + scale * (a @ factors[(*module, "lora_b")])
    return traverse_util.unflatten_dict(flat)


def _upstream_stems(config: EncoderConfig) -> dict[tuple[str, ...], tuple[str, str]]:
    arch = ARCHITECTURES[config.architecture]
    stems = {path: (arch.checkpoint_prefix + stem, kind) for path, (stem, kind) in arch.encoder_names(config).items()}
    stems.update(
        {path: (stem.format(prefix=arch.checkpoint_prefix), kind) for path, (stem, kind) in arch.head_names.items()}
    )
    return stems


def adapter_state_dict(
    adapters: Adapters, trained: Params, config: EncoderConfig
) -> dict[str, np.ndarray]:
    """Upstream-named tensors of the adapters (PEFT layout) and of the other trained parameters."""
    stems = _upstream_stems(config)
    state: dict[str, np.ndarray] = {}
    for path, value in traverse_util.flatten_dict(adapters).items():
        stem = stems[path[:-1]][0]
        factor = "lora_A" if path[-1] == "lora_a" else "lora_B"
        state[f"{stem}.{factor}.weight"] = np.ascontiguousarray(np.asarray(value, np.float32).T)
    for path, value in traverse_util.flatten_dict(trained).items():
        stem, kind = stems[path[:-1]]
        leaf = path[-1]
        if kind == DENSE:
            name, value = ("weight", np.asarray(value).T) if leaf == "kernel" else ("bias", value)
        elif kind == NORM:
            name = "weight" if leaf == "scale" else "bias"
        else:
            name = "weight"
        state[f"{stem}.{name}"] = np.ascontiguousarray(np.asarray(value, np.float32))
    return state


def weights_digest(folder: str) -> str:
    """SHA-256 of a checkpoint's weight files, identifying the exact base encoder."""
    from flaxmodel.checkpoint import SAFETENSORS_FILE, SAFETENSORS_INDEX, TORCH_FILE, TORCH_INDEX

    digest = hashlib.sha256()
    for name in (SAFETENSORS_FILE, SAFETENSORS_INDEX, TORCH_FILE, TORCH_INDEX):
        path = files.join(folder, name)
        if files.exists(path):
            digest.update(files.read_bytes(path))
            return digest.hexdigest()
    raise ConfigError(f"{folder}: no weight file to identify the base encoder by")


def base_reference(base_folder: str, package: str | None = None) -> dict[str, Any]:
    """How an adapter names its base: an installed package (portable) or a path."""
    path = str(base_folder) if files.is_remote(str(base_folder)) else os.path.abspath(base_folder)
    ref: dict[str, Any] = {"package": package} if package else {"path": path}
    ref["sha256"] = weights_digest(base_folder)
    return ref


def resolve_base(ref: Mapping[str, Any], source: str) -> str:
    """Folder of the base encoder an adapter config names; checks its weights hash."""
    from flaxmodel.default_model import MINILM_PACKAGE, minilm_path

    if "package" in ref:
        if ref["package"] != MINILM_PACKAGE:
            raise ConfigError(f"{source}: unknown base package {ref['package']!r}; known: {MINILM_PACKAGE}")
        folder = minilm_path()
    elif "path" in ref:
        folder = str(ref["path"])
    else:
        raise ConfigError(f"{source}: base_model must name a 'package' or a 'path'")
    expected = ref.get("sha256")
    if expected and weights_digest(folder) != expected:
        raise ConfigError(
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
    from safetensors.numpy import save

    from flaxmodel.checkpoint import CONFIG_FILE

    adapter_config = {
        "format": ADAPTER_FORMAT,
        "base_model": dict(base),
        "rank": lora.rank,
        "alpha": lora.alpha,
        "targets": list(lora.targets),
    }
    files.write_bytes(files.join(folder, ADAPTER_CONFIG), json.dumps(adapter_config, indent=2).encode())
    files.write_bytes(files.join(folder, CONFIG_FILE), json.dumps(config.to_hf_dict(), indent=2).encode())
    files.write_bytes(
        files.join(folder, ADAPTER_WEIGHTS),
        save(adapter_state_dict(adapters, trained, config), metadata={"format": "pt"}),
    )


def is_adapter_folder(folder: str) -> bool:
    return files.exists(files.join(folder, ADAPTER_CONFIG))


def read_adapter_config(folder: str) -> tuple[LoraConfig, dict[str, Any]]:
    path = files.join(folder, ADAPTER_CONFIG)
    try:
        raw = json.loads(files.read_bytes(path))
        if raw.get("format") != ADAPTER_FORMAT:
            raise ConfigError(f"{path}: format is {raw.get('format')!r}, expected {ADAPTER_FORMAT!r}")
        lora = LoraConfig(rank=int(raw["rank"]), alpha=float(raw["alpha"]), targets=tuple(raw["targets"]))
        return lora, dict(raw["base_model"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"{path}: not a valid adapter config ({err!r})") from None


def _overlay(base: Mapping[str, np.ndarray], trained: Mapping[str, np.ndarray], config: EncoderConfig) -> dict:
    """The base's tensors with the trained ones on top, in the base's naming.

    Adapters name tensors as the upstream task model does (``bert.encoder...``);
    a bare base encoder omits that prefix, so it is stripped to match.  The
    base's pre-training heads are dropped: the adapter brings its own head.
    """
    arch = ARCHITECTURES[config.architecture]
    prefix = arch.checkpoint_prefix if any(k.startswith(arch.checkpoint_prefix) for k in base) else ""
    pretraining = tuple(p.format(prefix=prefix) for p in arch.pretraining_prefixes)
    state = {k: v for k, v in base.items() if not k.startswith(pretraining)}
    for key, value in trained.items():
        if not prefix and key.startswith(arch.checkpoint_prefix):
            key = key[len(arch.checkpoint_prefix) :]
        state[key] = value
    return state


def load_adapter_checkpoint(folder: str, *, labels: Sequence[str] | None = None):
    """The merged :class:`~flaxmodel.checkpoint.Checkpoint` of an adapter folder."""
    from flaxmodel.checkpoint import (
        Checkpoint,
        CheckpointError,
        load_config,
        params_from_state_dict,
        parse_safetensors,
        read_state_dict,
    )

    lora, base_ref = read_adapter_config(folder)
    config = load_config(folder)
    if labels is not None and tuple(labels) != config.labels:
        raise ConfigError(f"{folder}: the adapter's head has labels {list(config.labels)}; asked for {list(labels)}")
    base_folder = resolve_base(base_ref, files.join(folder, ADAPTER_CONFIG))
    weights_path = files.join(folder, ADAPTER_WEIGHTS)
    if not files.exists(weights_path):
        raise CheckpointError(f"{folder}: no {ADAPTER_WEIGHTS}")
    saved = parse_safetensors(files.read_bytes(weights_path), weights_path)
    factors = {k: v for k, v in saved.items() if ".lora_A." in k or ".lora_B." in k}
    trained = {k: v for k, v in saved.items() if k not in factors}
    state = _overlay(read_state_dict(base_folder), trained, config)
    params, _ = params_from_state_dict(state, config, source=folder)

    adapters = {}
    for path, (stem, _) in _upstream_stems(config).items():
        a, b = factors.pop(f"{stem}.lora_A.weight", None), factors.pop(f"{stem}.lora_B.weight", None)
        if a is None and b is None:
            continue
        if a is None or b is None or a.shape[0] != lora.rank or b.shape[1] != lora.rank:
            raise CheckpointError(f"{weights_path}: incomplete or mis-shaped LoRA factors for {stem}")
        adapters[(*path, "lora_a")] = np.asarray(a, np.float32).T
        adapters[(*path, "lora_b")] = np.asarray(b, np.float32).T
    if factors:
        raise CheckpointError(f"{weights_path}: LoRA factors for unknown modules: {sorted(factors)[:10]}")
    merged = merge(params, traverse_util.unflatten_dict(adapters), lora.scale)
    merged = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), merged)
    return Checkpoint(config=config, params=merged, source=folder, fresh_head=False)
