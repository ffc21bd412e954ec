"""The optional target-group head of a model folder: ``target_head.json`` and ``target_head.safetensors``.

A head over seven (or any) protected categories is trained after the classifier,
on its frozen encoder (:mod:`flaxmodel.training.targets`), so it travels as its own
two files beside any checkpoint or adapter folder: the JSON names the categories,
the hidden width, the per-category thresholds and how they were chosen; the
tensors are named by the table below, every one accounted for.  A folder without
them has no target head, and its label rows have no ``target_*`` columns.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

import numpy as np

from flaxmodel.ckpts import files
from flaxmodel.ckpts.checkpoint import parse_safetensors
from flaxmodel.errors import CheckpointError

TARGET_HEAD_CONFIG = "target_head.json"
TARGET_HEAD_WEIGHTS = "target_head.safetensors"
TARGET_HEAD_FORMAT = "flaxmodel-target-head"

# Our tree under params["target_head"] -> tensor name; kernels are stored [out, in], as torch's Linear.
_TENSORS = {
    ("dense", "kernel"): "dense.weight",
    ("dense", "bias"): "dense.bias",
    ("out_proj", "kernel"): "out_proj.weight",
    ("out_proj", "bias"): "out_proj.bias",
}


@dataclasses.dataclass(frozen=True)
class TargetHeadSpec:
    """What ``target_head.json`` says.

    Attributes:
      categories: the categories, in output order.
      hidden_size: width of the head's hidden layer.
      thresholds: category -> score at or above which a text's ``targets`` names it.
    """

    categories: tuple[str, ...]
    hidden_size: int
    thresholds: Mapping[str, float]


def read_target_head_spec(folder: str) -> TargetHeadSpec | None:
    """The folder's target head description, or None when it has no target head."""
    path = files.join(folder, TARGET_HEAD_CONFIG)
    if not files.exists(path):
        return None
    try:
        raw = json.loads(files.read_bytes(path))
        categories = tuple(str(c) for c in raw["categories"])
        hidden = int(raw["hidden_size"])
        thresholds = {str(k): float(v) for k, v in raw["thresholds"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(
            f"{path}: expected {{'categories': [...], 'hidden_size': N, 'thresholds': {{category: p}}}} ({err!r})"
        ) from None
    if raw.get("format") != TARGET_HEAD_FORMAT:
        raise CheckpointError(f"{path}: format is {raw.get('format')!r}, expected {TARGET_HEAD_FORMAT!r}")
    if not categories or len(set(categories)) != len(categories) or hidden <= 0:
        raise CheckpointError(f"{path}: needs distinct categories and a positive hidden_size")
    if set(thresholds) != set(categories):
        raise CheckpointError(f"{path}: thresholds must name exactly the categories {list(categories)}")
    bad = [c for c, t in thresholds.items() if math.isnan(t) or not 0.0 <= t <= 1.0]
    if bad:
        raise CheckpointError(f"{path}: thresholds of {bad} are not probabilities in [0, 1]")
    return TargetHeadSpec(categories, hidden, thresholds)


def read_target_head(folder: str, spec: TargetHeadSpec, hidden_size: int) -> dict[str, dict[str, np.ndarray]]:
    """The head's float32 parameters as our tree ``{"dense": {...}, "out_proj": {...}}``.

    Args:
      folder: the model folder.
      spec: its :func:`read_target_head_spec`.
      hidden_size: the encoder's hidden size, which the head reads.
    """
    path = files.join(folder, TARGET_HEAD_WEIGHTS)
    if not files.exists(path):
        raise CheckpointError(f"{folder}: {TARGET_HEAD_CONFIG} without {TARGET_HEAD_WEIGHTS}")
    tensors = parse_safetensors(files.read_bytes(path), path)
    unexpected = sorted(set(tensors) - set(_TENSORS.values()))
    missing = sorted(set(_TENSORS.values()) - set(tensors))
    if unexpected or missing:
        raise CheckpointError(f"{path}: missing tensors {missing}, unexpected tensors {unexpected}")
    shapes = {
        "dense.weight": (spec.hidden_size, hidden_size),
        "dense.bias": (spec.hidden_size,),
        "out_proj.weight": (len(spec.categories), spec.hidden_size),
        "out_proj.bias": (len(spec.categories),),
    }
    wrong = {name: tensors[name].shape for name, shape in shapes.items() if tensors[name].shape != shape}
    if wrong:
        raise CheckpointError(f"{path}: tensors of the wrong shape {wrong}; expected {shapes}")
    tree: dict[str, dict[str, np.ndarray]] = {"dense": {}, "out_proj": {}}
    for (layer, leaf), name in _TENSORS.items():
        value = np.asarray(tensors[name], np.float32)
        tree[layer][leaf] = value.T if leaf == "kernel" else value
    return tree


def write_target_head(
    folder: str,
    categories: tuple[str, ...],
    params: Mapping[str, Mapping[str, Any]],
    thresholds: Mapping[str, float],
    how: Mapping[str, Any],
) -> None:
    """Writes ``target_head.json`` and ``target_head.safetensors`` into a model folder.

    Args:
      folder: the model folder (local or on a Beam filesystem).
      categories: the head's categories, in output order.
      params: the head's tree ``{"dense": {"kernel" [hidden, h], "bias"}, "out_proj": {...}}``.
      thresholds: category -> chosen threshold.
      how: how it was trained and the thresholds chosen, stored beside them.
    """
    from safetensors.numpy import save

    tensors = {
        name: np.ascontiguousarray(np.asarray(params[layer][leaf], np.float32).T if leaf == "kernel" else params[layer][leaf], np.float32)
        for (layer, leaf), name in _TENSORS.items()
    }
    spec = {
        "format": TARGET_HEAD_FORMAT,
        "categories": list(categories),
        "hidden_size": int(tensors["dense.bias"].shape[0]),
        "thresholds": {c: float(thresholds[c]) for c in categories},
        **how,
    }
    files.write_bytes(files.join(folder, TARGET_HEAD_WEIGHTS), save(tensors))
    files.write_bytes(files.join(folder, TARGET_HEAD_CONFIG), (json.dumps(spec, indent=2) + "\n").encode())
