"""LoRA adapters as a pure transform of the parameter tree: the math only, no files.

A low-rank adapter adds ``scale * a @ b`` (``a: [in, rank]``, ``b: [rank, out]``,
``scale = alpha / rank``) to the kernel of a chosen dense layer.  Nothing in the
model knows about it: :func:`merge` returns an ordinary parameter tree, so the
training loss differentiates through ``apply(merge(base, adapters), ...)`` with
the base frozen, and a loaded adapter is merged once into its base encoder so
inference costs exactly what the base model costs.

Their saved form (adapter folders) lives in :mod:`flaxmodel.ckpts.adapters`,
which imports this module, never the reverse.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from flaxmodel.core.model import Params
from flaxmodel.errors import ConfigError

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
    paths = target_paths(params, lora)
    for path, key in zip(paths, jax.random.split(rng, len(paths))):
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


def combine(adapters: list[Adapters], scales: list[float], weights: list[float]) -> Adapters:
    """One adapter whose update is the weighted sum of several adapters' updates, exactly, at scale 1.

    ``sum_i w_i * s_i * a_i @ b_i`` is ``[a_1 ... a_k] @ [w_1 s_1 b_1; ...; w_k s_k b_k]``: the ``a``
    factors side by side, the ``b`` factors stacked, so the result has rank ``sum_i rank_i`` and no
    approximation (an SVD to a lower rank would lose part of the average).

    Args:
      adapters: the adapters, each ``{module path: {"lora_a": [in, rank_i], "lora_b": [rank_i, out]}}``,
        all on the same modules.
      scales: each adapter's ``alpha / rank``.
      weights: each adapter's weight in the sum (1/k each for a uniform average).

    Returns:
      The combined adapter, to be merged with scale 1.0.
    """
    flats = [traverse_util.flatten_dict(a) for a in adapters]
    if any(flat.keys() != flats[0].keys() for flat in flats):
        raise ConfigError("adapters to combine must adapt the same modules")
    out = {}
    for path in flats[0]:
        if path[-1] == "lora_a":
            out[path] = np.concatenate([np.asarray(flat[path]) for flat in flats], axis=1)
        else:
            parts = [w * s * np.asarray(flat[path]) for flat, s, w in zip(flats, scales, weights)]
            out[path] = np.concatenate(parts, axis=0)
    return traverse_util.unflatten_dict(out)


def truncate(adapters: Adapters, rank: int) -> tuple[Adapters, float]:
    """The best approximation of an adapter's updates at a lower rank (truncated SVD, module by module).

    A combined adapter has the summed rank of its ingredients; truncating it trades part of the update
    for a smaller file.  How much is lost is for validation to judge; the kept share of the update's
    energy (squared Frobenius norm) is returned as a first sign.

    Args:
      adapters: ``{module path: {"lora_a": [in, r], "lora_b": [r, out]}}``, merged at scale 1.0.
      rank: the rank to keep; a module whose update is already of rank ``<= rank`` keeps all of it.

    Returns:
      ``(adapters, kept)``: the truncated adapter (``lora_a: [in, k]``, ``lora_b: [k, out]``,
      ``k = min(rank, r)``, still at scale 1.0) and the share of the total energy kept, in [0, 1].
    """
    if rank < 1:
        raise ConfigError(f"rank must be at least 1, got {rank}")
    flat = traverse_util.flatten_dict(adapters)
    out, kept, total = {}, 0.0, 0.0
    for path in [p for p in flat if p[-1] == "lora_a"]:
        a, b = np.asarray(flat[path], np.float64), np.asarray(flat[(*path[:-1], "lora_b")], np.float64)
        # The SVD of a @ b from the small factors: a = Qa Ra, b^T = Qb Rb, a @ b = Qa (Ra Rb^T) Qb^T.
        qa, ra = np.linalg.qr(a)
        qb, rb = np.linalg.qr(b.T)
        u, s, vt = np.linalg.svd(ra @ rb.T)
        k = min(rank, s.size)
        kept, total = kept + float(np.sum(s[:k] ** 2)), total + float(np.sum(s**2))
        root = np.sqrt(s[:k])
        out[path] = ((qa @ u[:, :k]) * root).astype(np.float32)
        out[(*path[:-1], "lora_b")] = (root[:, None] * (vt[:k] @ qb.T)).astype(np.float32)
    return traverse_util.unflatten_dict(out), (kept / total if total else 1.0)
