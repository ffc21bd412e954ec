"""Hugging Face checkpoint folders in and out: config, weights, parameter mapping.

A folder holds ``config.json`` and weights as ``model.safetensors`` (or sharded
with ``model.safetensors.index.json``), or ``pytorch_model.bin`` (read by the
weights-only reader in ``torch_bin``).  Every upstream tensor is mapped into our
parameter tree through the architecture's name table and accounted for: missing,
unexpected or mis-shaped tensors raise :class:`CheckpointError` naming them.  A
folder with only a base encoder gets a freshly initialised head, with a warning.
Nothing here downloads anything: paths are local or on a Beam filesystem.
LoRA adapter folders are read by :mod:`flaxmodel.ckpts.adapters` on top of this
module, and :mod:`flaxmodel.ckpts.loader` picks between the two.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from typing import Iterable, Mapping, Sequence

import jax
import ml_dtypes
import numpy as np
from flax import traverse_util

from flaxmodel.ckpts import files
from flaxmodel.ckpts.torch_bin import load_torch_state_dict
from flaxmodel.core.architecture import DENSE, EMBED, NORM, Architecture
from flaxmodel.core.config import EncoderConfig
from flaxmodel.errors import CheckpointError, ConfigError
from flaxmodel.core.layers import ACTIVATIONS
from flaxmodel.core.model import ARCHITECTURES, Params, init_params

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
# Where a folder's weights may be, in the order they are looked for: safetensors first.
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, TORCH_FILE, TORCH_INDEX)

# Upstream buffers saved alongside the weights; they are recomputed, not learned.
_BUFFER_SUFFIXES = ("position_ids", "token_type_ids")

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    config: EncoderConfig
    params: Params
    source: str
    fresh_head: bool = False


def load_config(folder: str) -> EncoderConfig:
    path = files.join(folder, CONFIG_FILE)
    if not files.exists(path):
        raise CheckpointError(f"{folder}: no {CONFIG_FILE}; is this a Hugging Face model folder?")
    try:
        raw = json.loads(files.read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    config = EncoderConfig.from_hf_dict(raw, source=path)
    if config.hidden_act not in ACTIVATIONS:
        raise ConfigError(
            f"{path}: unsupported activation function {config.hidden_act!r}; supported: {sorted(ACTIVATIONS)}"
        )
    return config


def check_labels(folder: str, config: EncoderConfig, labels: Sequence[str] | None) -> None:
    """Raises :class:`CheckpointError` if a trained head's labels are not the ``labels`` asked for."""
    if labels is not None and tuple(labels) != config.labels:
        raise CheckpointError(
            f"{folder}: the checkpoint's head has labels {list(config.labels)}; asked for {list(labels)}"
        )


def load_hf_checkpoint(folder: str, *, labels: Sequence[str] | None = None, seed: int = 0) -> Checkpoint:
    """Config and float32 parameters of a Hugging Face model folder (not an adapter folder).

    ``labels`` names the classes of a freshly initialised head when the folder
    holds only a base encoder; for a folder with a head it must match ``id2label``.
    """
    folder = str(folder)
    config = load_config(folder)
    state = read_state_dict(folder)
    arch = ARCHITECTURES[config.architecture]
    if labels is not None:
        if _classifier_key(arch, arch.detect_prefix(state)) in state:
            check_labels(folder, config, labels)
        config = config.with_labels(tuple(labels))
    params, fresh = params_from_state_dict(state, config, source=folder, seed=seed)
    return Checkpoint(config=config, params=params, source=folder, fresh_head=bool(fresh))


def read_state_dict(folder: str) -> dict[str, np.ndarray]:
    """Upstream tensors by name, from whichever weight file the folder has."""
    for name in WEIGHT_FILES:
        path = files.join(folder, name)
        if not files.exists(path):
            continue
        if name.endswith(".index.json"):
            return _read_sharded(folder, path)
        return _read_weight_file(path)
    raise CheckpointError(f"{folder}: no weights; expected one of {', '.join(WEIGHT_FILES)}")


def _read_sharded(folder: str, index_path: str) -> dict[str, np.ndarray]:
    try:
        weight_map: Mapping[str, str] = json.loads(files.read_bytes(index_path))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{index_path}: not a valid shard index ({err})") from None
    state: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = files.join(folder, shard)
        if not files.exists(shard_path):
            raise CheckpointError(f"{index_path}: shard {shard} is missing")
        state.update(_read_weight_file(shard_path))
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise CheckpointError(f"{index_path}: tensors listed but absent from their shards: {missing[:10]}")
    return state


def _read_weight_file(path: str) -> dict[str, np.ndarray]:
    data = files.read_bytes(path)
    if path.endswith(".safetensors"):
        return parse_safetensors(data, path)
    try:
        return load_torch_state_dict(data)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None


def parse_safetensors(data: bytes, source: str) -> dict[str, np.ndarray]:
    """Tensors of a safetensors buffer; bfloat16 included (numpy via ml_dtypes)."""

    def corrupt(why: str) -> CheckpointError:
        return CheckpointError(f"{source}: corrupt safetensors file ({why})")

    if len(data) < 8:
        raise corrupt("shorter than its header")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise corrupt("header length beyond end of file")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise corrupt("header is not JSON") from None
    if not isinstance(header, dict):
        raise corrupt("header is not a JSON object")
    body = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
            shape = tuple(int(d) for d in info["shape"])
            start, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise corrupt(f"bad entry for tensor {name!r}") from None
        count = math.prod(shape)
        if end - start != count * dtype.itemsize or start < 0 or body + end > len(data):
            raise corrupt(f"tensor {name!r} does not fit the file")
        tensors[name] = np.frombuffer(data, dtype=dtype, count=count, offset=body + start).reshape(shape)
    return tensors


def _normalise_name(name: str) -> str:
    # Checkpoints converted from TF BERT name layer-norm parameters gamma/beta.
    if name.endswith(".gamma"):
        return name[: -len("gamma")] + "weight"
    if name.endswith(".beta"):
        return name[: -len("beta")] + "bias"
    return name


def _classifier_key(arch: Architecture, prefix: str) -> str:
    """The head's output layer: its absence marks a base encoder."""
    stem = list(arch.head_names.values())[-1][0]
    return stem.format(prefix=prefix) + ".weight"


def tensor_leaves(stem: str, kind: str) -> Iterable[tuple[str, str, bool]]:
    """(upstream key, our leaf name, transpose?) for one upstream module."""
    if kind == DENSE:
        return ((f"{stem}.weight", "kernel", True), (f"{stem}.bias", "bias", False))
    if kind == NORM:
        return ((f"{stem}.weight", "scale", False), (f"{stem}.bias", "bias", False))
    if kind == EMBED:
        return ((f"{stem}.weight", "embedding", False),)
    raise AssertionError(kind)


def params_from_state_dict(
    state: Mapping[str, np.ndarray], config: EncoderConfig, *, source: str = "checkpoint", seed: int = 0
) -> tuple[Params, list[str]]:
    """Our parameter tree from upstream tensors; returns it and the freshly initialised head tensors."""
    arch = ARCHITECTURES[config.architecture]
    state = {_normalise_name(k): v for k, v in state.items()}
    prefix = arch.detect_prefix(state)
    shapes = traverse_util.flatten_dict(
        jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0)))
    )
    fresh_head = _classifier_key(arch, prefix) not in state

    flat: dict[tuple[str, ...], np.ndarray] = {}
    used: set[str] = set()
    missing: list[str] = []
    mismatched: list[str] = []
    fresh: list[str] = []
    for path, (stem, kind) in arch.tensor_names(config, prefix).items():
        for key, leaf, transpose in tensor_leaves(stem, kind):
            if key not in state:
                (fresh if fresh_head and path[0] == "head" else missing).append(key)
                continue
            value = np.asarray(state[key], dtype=np.float32)
            value = value.T if transpose else value
            expected = shapes[(*path, leaf)].shape
            if value.shape != expected:
                mismatched.append(f"{key}: checkpoint {tuple(value.shape)}, model expects {expected}")
            flat[(*path, leaf)] = value
            used.add(key)

    droppable = arch.pretraining_keys(prefix) if fresh_head else ()
    unexpected = sorted(
        k for k in state if k not in used and not k.endswith(_BUFFER_SUFFIXES) and not k.startswith(droppable)
    )
    problems = []
    if missing:
        problems.append(f"missing tensors: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
    if mismatched:
        problems.append("mis-shaped tensors: " + "; ".join(mismatched[:10]))
    if problems:
        raise CheckpointError(f"{source}: weights do not match the {config.model_type} config: " + " | ".join(problems))

    if fresh:
        head = jax.tree_util.tree_map(
            np.asarray,
            arch.head(config).init(
                jax.random.PRNGKey(seed), np.zeros((1, 1, config.hidden_size), np.float32), True
            )["params"],
        )
        for path, value in traverse_util.flatten_dict(head).items():
            flat.setdefault(("head", *path), value)
        log.warning(
            "%s holds a base %s encoder without a classification head: initialised a fresh head "
            "for labels %s (%s). Fine-tune it before trusting its predictions.",
            source,
            config.model_type,
            list(config.labels),
            ", ".join(sorted({k.rsplit(".", 1)[0] for k in fresh})),
        )
    return traverse_util.unflatten_dict(flat), fresh


def state_dict_from_params(params: Params, config: EncoderConfig) -> dict[str, np.ndarray]:
    """Upstream-named tensors (task-model layout) of our parameters; the inverse of loading."""
    arch = ARCHITECTURES[config.architecture]
    flat = traverse_util.flatten_dict(params)
    state = {}
    for path, (stem, kind) in arch.tensor_names(config, arch.checkpoint_prefix).items():
        for key, leaf, transpose in tensor_leaves(stem, kind):
            value = np.asarray(flat[(*path, leaf)], dtype=np.float32)
            state[key] = np.ascontiguousarray(value.T if transpose else value)
    return state


def save_checkpoint(folder: str, params: Params, config: EncoderConfig) -> None:
    """Writes ``config.json`` and ``model.safetensors`` loadable by us and by transformers."""
    from safetensors.numpy import save

    files.write_bytes(files.join(folder, CONFIG_FILE), json.dumps(config.to_hf_dict(), indent=2).encode())
    files.write_bytes(
        files.join(folder, SAFETENSORS_FILE),
        save(state_dict_from_params(params, config), metadata={"format": "pt"}),
    )
