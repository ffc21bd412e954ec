"""The matrix multiplies of each precision the encoder runs in, and the weights each one reads.

A precision names the inputs of the encoder's dense-layer matrix multiplies;
everything else (embeddings, layer norms, GELU, softmax, residual adds, the
classification head, and the accumulation of every product) stays float32:

* ``float32``: plain float32 products.
* ``bfloat16``: inputs rounded to bfloat16, products accumulated in float32
  (the two attention products too).  :func:`prepare_params` stores the encoder's
  kernels in bfloat16 once, so no call converts weights.
* ``int8``: kernels quantized once per output channel (symmetric, scale =
  max |w| / 127); each activation row quantized on the fly with its own scale;
  int8 x int8 products accumulated in int32, then rescaled to float32.  The
  attention products (activation by activation: 1-2% of MiniLM's FLOPs at
  tweet lengths, but 13% of the time when run in float32) take bfloat16 inputs
  with float32 accumulation, as in ``bfloat16``.  Per-row and per-channel scales
  are finer than ONNX Runtime's dynamic quantization (one scale per tensor).

Only the encoder is reduced: the head reads one row per text (a negligible
share of the FLOPs) and its output is the probabilities themselves.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

PRECISIONS = ("float32", "bfloat16", "int8")
# The ``dtype`` that :func:`flaxmodel.core.model.apply` takes for each precision.
COMPUTE_DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "int8": jnp.int8}
INT8_MAX = 127
# The int8 kernel's per-output-channel scale sits next to it under this name.
KERNEL_SCALE = "kernel_scale"
# Parameters under this top-level key are reduced; the head's are not.
REDUCED_SUBTREE = "encoder"


def quantize_per_channel(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantization of a dense kernel, one scale per output channel.

    Args:
      kernel: float ``[in, out]``.

    Returns:
      ``(quantized, scale)``: int8 ``[in, out]`` and float32 ``[out]`` with
      ``quantized * scale ~= kernel`` (an all-zero column gets scale 1).
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    peak = np.abs(kernel).max(axis=0)
    scale = np.where(peak > 0, peak / INT8_MAX, 1.0).astype(np.float32)
    quantized = np.clip(np.rint(kernel / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
    return quantized, scale


def quantize_rows(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Symmetric int8 quantization of activations, one scale per row (last axis).

    Args:
      x: float ``[..., features]``.

    Returns:
      ``(quantized, scale)``: int8 ``[..., features]`` and float32 ``[..., 1]``
      (an all-zero row, such as padding filler, gets scale 1).
    """
    x = x.astype(jnp.float32)
    peak = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
    scale = jnp.where(peak > 0, peak / INT8_MAX, 1.0)
    quantized = jnp.clip(jnp.round(x / scale), -INT8_MAX, INT8_MAX).astype(jnp.int8)
    return quantized, scale


def _contract_last(x: jax.Array, kernel: jax.Array, accumulate: Any) -> jax.Array:
    dims = (((x.ndim - 1,), (0,)), ((), ()))
    return jax.lax.dot_general(x, kernel, dims, preferred_element_type=accumulate)


def matmul(x: jax.Array, kernel: jax.Array, dtype: Any, scale: jax.Array | None = None) -> jax.Array:
    """``x @ kernel`` in precision ``dtype`` (one of :data:`COMPUTE_DTYPES`' values), float32 out.

    Args:
      x: float32 activations ``[..., in]``.
      kernel: ``[in, out]``: float32 or bfloat16 for the float paths, int8 for ``jnp.int8``.
      dtype: ``jnp.float32``, ``jnp.bfloat16`` or ``jnp.int8``.
      scale: float32 ``[out]``, the int8 kernel's per-channel scale (int8 only).

    Returns:
      float32 ``[..., out]``.
    """
    if dtype == jnp.int8:
        quantized, row_scale = quantize_rows(x)
        return _contract_last(quantized, kernel, jnp.int32).astype(jnp.float32) * row_scale * scale
    return _contract_last(x.astype(dtype), kernel.astype(dtype), jnp.float32)


def prepare_params(params: dict, precision: str) -> dict:
    """The parameters ``apply`` reads in ``precision``, prepared once at load.

    Args:
      params: the float32 parameter tree (as loaded or trained).
      precision: one of :data:`PRECISIONS`.

    Returns:
      A new tree of host numpy arrays: ``float32`` everything in float32 (a
      bfloat16 checkpoint is widened); ``bfloat16`` with
      the encoder's dense kernels ``[in, out]`` stored in bfloat16; ``int8`` with
      them replaced by int8 ``[in, out]`` kernels plus a float32 ``[out]``
      ``kernel_scale`` beside each.  Embeddings, norms, biases and the head
      stay float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    prepared = {}
    for path, value in traverse_util.flatten_dict(params).items():
        value = np.asarray(value, dtype=np.float32)
        if path[0] != REDUCED_SUBTREE or path[-1] != "kernel" or precision == "float32":
            prepared[path] = value
        elif precision == "bfloat16":
            prepared[path] = value.astype(jnp.bfloat16)
        else:
            prepared[path], prepared[(*path[:-1], KERNEL_SCALE)] = quantize_per_channel(value)
    return traverse_util.unflatten_dict(prepared)
