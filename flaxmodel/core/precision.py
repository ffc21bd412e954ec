"""The matrix multiplies of each precision the encoder runs in, and the weights each one reads.

A precision names the inputs of the encoder's dense-layer matrix multiplies;
everything else (embeddings, layer norms, GELU, softmax, residual adds, the
classification head, and the accumulation of every product) stays float32:

* ``float32``: plain float32 products.
* ``bfloat16``: inputs rounded to bfloat16, products accumulated in float32
  (the two attention products too).  :func:`prepare_params` stores the encoder's
  kernels in bfloat16 once, so no call converts weights.
* ``int8``: kernels quantized once per output channel (symmetric, scale =
  max |w| / 127; their column sums, which the CPU's product subtracts, stored
  beside them); each activation row quantized on the fly with its own scale;
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
from jax.extend import core as jex_core
from jax.extend.mlir.dialects import stablehlo
from jax.interpreters import mlir

PRECISIONS = ("float32", "bfloat16", "int8")
# The ``dtype`` that :func:`flaxmodel.core.model.apply` takes for each precision.
COMPUTE_DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "int8": jnp.int8}
INT8_MAX = 127
# The int8 kernel's per-output-channel scale sits next to it under this name.
KERNEL_SCALE = "kernel_scale"
# So do its int32 column sums, which the CPU's uint8 x int8 product subtracts (``int8_dot``).
KERNEL_COLUMN_SUMS = "kernel_column_sums"
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


# ``int8_dot(a, b)``: the exact int32 product of int8 ``a [m, k]`` and int8 ``b [k, n]``.  Every platform but
# the CPU lowers it as the int8 x int8 dot it is.  On a CPU, XLA's YNNPACK kernels for int8 x int8 are plain
# AVX-512 (no instruction multiplies signed by signed bytes short of AMX), while its uint8 x int8 kernels use
# AVX512-VNNI ``vpdpbusd`` (and AMX where present); JAX's own ``dot_general`` converts mixed operand types
# to a common one first, so the CPU lowering emits the uint8 x int8 dot itself: ``(a + 128) @ b - 128 *
# colsum(b)``, the same integers (benchmarks/README.md, issue 45, has the kernels' rates).  The column sums
# are the third operand, computed once at load (``prepare_params``): summed inside the forward, XLA widened
# every kernel to int32 on every call, 18% of the int8 forward on the 2-core AMD EPYC.
_int8_dot_p = jex_core.Primitive("int8_dot")
_uint8_int8_dot_p = jex_core.Primitive("uint8_int8_dot")


def _int32_product_shape(a: jax.core.ShapedArray, b: jax.core.ShapedArray, *_: Any) -> jax.core.ShapedArray:
    return jax.core.ShapedArray((a.shape[0], b.shape[1]), jnp.int32)


def _lower_dot(ctx: Any, a: Any, b: Any, *_: Any) -> list:
    # A plain 2-D dot of whatever operand types it is given (stablehlo allows them to differ); the column
    # sums, unused, are dropped with the code computing them.
    dims = stablehlo.DotDimensionNumbers.get(
        lhs_batching_dimensions=[], rhs_batching_dimensions=[], lhs_contracting_dimensions=[1], rhs_contracting_dimensions=[0]
    )
    return [stablehlo.dot_general(mlir.aval_to_ir_type(ctx.module_context, ctx.avals_out[0]), a, b, dims)]


def _int8_dot_on_cpu(a: jax.Array, b: jax.Array, column_sums: jax.Array) -> jax.Array:
    # a + 128 as uint8 is a's two's-complement bits with the sign bit flipped.
    shifted = jax.lax.bitcast_convert_type(a, jnp.uint8) ^ jnp.uint8(0x80)
    return _uint8_int8_dot_p.bind(shifted, b) - 128 * column_sums


for _primitive in (_int8_dot_p, _uint8_int8_dot_p):
    _primitive.def_abstract_eval(_int32_product_shape)
    # Outside jit (eager calls, tests) the primitive runs as a jitted call of itself.
    _primitive.def_impl(jax.jit(_primitive.bind))
mlir.register_lowering(_uint8_int8_dot_p, _lower_dot)
mlir.register_lowering(_int8_dot_p, _lower_dot)
mlir.register_lowering(_int8_dot_p, mlir.lower_fun(_int8_dot_on_cpu, multiple_results=False), platform="cpu")


def column_sums(kernel: np.ndarray) -> np.ndarray:
    """An int8 kernel's column sums, the int32 ``[n]`` that :func:`int8_dot` takes for ``[k, n]``."""
    return np.asarray(kernel, dtype=np.int32).sum(axis=0, dtype=np.int32)


def int8_dot(a: jax.Array, b: jax.Array, b_column_sums: jax.Array | None = None) -> jax.Array:
    """The exact product of int8 matrices, through the CPU's fastest integer kernel.

    Args:
      a: int8 ``[m, k]``.
      b: int8 ``[k, n]``.
      b_column_sums: int32 ``[n]``, ``b``'s :func:`column_sums` when ``b`` is a
        parameter (summed here, on every call, when left out).

    Returns:
      int32 ``[m, n]``, equal to ``a @ b`` in integers on every platform.
    """
    if a.dtype != jnp.int8 or b.dtype != jnp.int8 or a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"int8_dot takes int8 [m, k] and [k, n], got {a.dtype}{list(a.shape)} and {b.dtype}{list(b.shape)}")
    if b_column_sums is None:
        b_column_sums = jnp.sum(b, axis=0, dtype=jnp.int32)
    return _int8_dot_p.bind(a, b, b_column_sums)


def matmul(
    x: jax.Array, kernel: jax.Array, dtype: Any, scale: jax.Array | None = None, sums: jax.Array | None = None
) -> jax.Array:
    """``x @ kernel`` in precision ``dtype`` (one of :data:`COMPUTE_DTYPES`' values), float32 out.

    Args:
      x: float32 activations ``[..., in]``.
      kernel: ``[in, out]``: float32 or bfloat16 for the float paths, int8 for ``jnp.int8``.
      dtype: ``jnp.float32``, ``jnp.bfloat16`` or ``jnp.int8``.
      scale: float32 ``[out]``, the int8 kernel's per-channel scale (int8 only).
      sums: int32 ``[out]``, the int8 kernel's :func:`column_sums` (int8 only; computed per call if left out).

    Returns:
      float32 ``[..., out]``.
    """
    if dtype == jnp.int8:
        quantized, row_scale = quantize_rows(x)
        product = int8_dot(quantized.reshape(-1, x.shape[-1]), kernel, sums).reshape(*x.shape[:-1], kernel.shape[1])
        return product.astype(jnp.float32) * row_scale * scale
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
      ``kernel_scale`` and an int32 ``[out]`` ``kernel_column_sums`` beside each.  Embeddings, norms, biases and the head
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
            prepared[(*path[:-1], KERNEL_COLUMN_SUMS)] = column_sums(prepared[path])
    return traverse_util.unflatten_dict(prepared)
