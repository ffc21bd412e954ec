"""The precision paths' math: per-channel and per-row int8 quantization, and the weights each path reads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxmodel import load_checkpoint
from flaxmodel.core.model import apply
from flaxmodel.core.precision import (
    INT8_MAX,
    KERNEL_COLUMN_SUMS,
    KERNEL_SCALE,
    int8_dot,
    matmul,
    prepare_params,
    quantize_per_channel,
    quantize_rows,
)


def test_per_channel_quantization_rounds_each_weight_to_its_columns_grid():
    kernel = np.random.default_rng(0).normal(size=(48, 5)).astype(np.float32) * np.array([1e-3, 0.1, 1, 10, 0])
    quantized, scale = quantize_per_channel(kernel)
    assert quantized.dtype == np.int8 and scale.shape == (5,)
    np.testing.assert_allclose(scale[:4], np.abs(kernel[:, :4]).max(axis=0) / INT8_MAX, rtol=1e-6)
    assert scale[4] == 1.0 and not quantized[:, 4].any()  # an all-zero column stays exact
    assert np.all(np.abs(quantized * scale - kernel) <= scale / 2 + 1e-7)
    assert np.abs(quantized).max() == INT8_MAX


def test_per_row_quantization_gives_each_row_its_own_scale_and_padding_rows_stay_zero():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 16)) * np.array([1e-2, 1, 100])[None, :, None])
    x = x.at[1, 2].set(0.0)
    quantized, scale = quantize_rows(x)
    assert quantized.dtype == jnp.int8 and scale.shape == (2, 3, 1)
    assert float(scale[1, 2, 0]) == 1.0 and not np.asarray(quantized[1, 2]).any()
    assert np.all(np.abs(np.asarray(quantized) * np.asarray(scale) - np.asarray(x)) <= np.asarray(scale) / 2 + 1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 1), (33, 70, 17), (64, 384, 96)])
def test_int8_dot_is_the_exact_integer_product_extremes_included(shape):
    m, k, n = shape
    rng = np.random.default_rng(m)
    a = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
    b = rng.integers(-128, 128, size=(k, n)).astype(np.int8)
    a[0, 0], b[0, 0] = -128, 127
    exact = a.astype(np.int64) @ b.astype(np.int64)
    assert np.array_equal(np.asarray(int8_dot(a, b)), exact)  # eager
    assert np.array_equal(np.asarray(jax.jit(int8_dot)(a, b)), exact)
    assert np.asarray(jax.jit(int8_dot)(a, b)).dtype == np.int32
    sums = b.astype(np.int64).sum(axis=0).astype(np.int32)  # as prepare_params stores them
    assert np.array_equal(np.asarray(jax.jit(int8_dot)(a, b, sums)), exact)


def test_int8_dot_refuses_what_it_does_not_multiply():
    with pytest.raises(ValueError, match="int8_dot takes int8"):
        int8_dot(np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8))
    with pytest.raises(ValueError, match="int8_dot takes int8"):
        int8_dot(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.int8))


@pytest.mark.parametrize("dtype, bound", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2), (jnp.int8, 3e-2)])
def test_each_paths_matmul_stays_close_to_float32(dtype, bound):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(4, 7, 64)), jnp.float32)
    kernel = rng.normal(size=(64, 32)).astype(np.float32) / 8
    exact = np.asarray(x) @ kernel
    if dtype == jnp.int8:
        quantized, scale = quantize_per_channel(kernel)
        out = matmul(x, jnp.asarray(quantized), dtype, jnp.asarray(scale))
    else:
        out = matmul(x, jnp.asarray(kernel, dtype), dtype)
    assert out.dtype == jnp.float32
    assert np.abs(np.asarray(out) - exact).max() / np.abs(exact).max() < bound


def test_prepared_params_reduce_only_the_encoders_dense_kernels(tiny_checkpoint):
    params = load_checkpoint(tiny_checkpoint("bert")).params
    layer = ("encoder", "layer_0", "ffn", "intermediate")

    def at(tree, path):
        for key in path:
            tree = tree[key]
        return tree

    float32 = prepare_params(params, "float32")
    assert jax.tree_util.tree_structure(float32) == jax.tree_util.tree_structure(params)
    assert all(leaf.dtype == np.float32 for leaf in jax.tree_util.tree_leaves(float32))
    bf16 = prepare_params(params, "bfloat16")
    assert at(bf16, layer)["kernel"].dtype == jnp.bfloat16
    int8 = prepare_params(params, "int8")
    kernel, scale = at(int8, layer)["kernel"], at(int8, layer)[KERNEL_SCALE]
    assert kernel.dtype == np.int8 and scale.shape == (kernel.shape[1],)
    sums = at(int8, layer)[KERNEL_COLUMN_SUMS]
    assert sums.dtype == np.int32 and np.array_equal(sums, [int(c) for c in kernel.astype(np.int64).sum(axis=0)])
    np.testing.assert_allclose(kernel * scale, at(params, layer)["kernel"], atol=float(scale.max()) / 2 + 1e-7)
    for prepared in (bf16, int8):
        # Embeddings, norms, biases and the head stay float32.
        assert at(prepared, ("head", "classifier"))["kernel"].dtype == np.float32
        assert at(prepared, ("encoder", "embeddings", "word"))["embedding"].dtype == np.float32
        assert at(prepared, ("encoder", "layer_0", "ffn_norm"))["scale"].dtype == np.float32
        assert at(prepared, layer)["bias"].dtype == np.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        prepare_params(params, "float16")


def test_the_int8_forward_reads_its_kernels_column_sums_instead_of_widening_the_kernels(tiny_checkpoint):
    # Summed inside the forward, XLA converted every int8 kernel to int32 on every call (18% of the default
    # model's int8 forward on a 2-core AMD EPYC): no int32 array of a kernel's shape may appear in the program.
    checkpoint = load_checkpoint(tiny_checkpoint("bert"))
    params = prepare_params(checkpoint.params, "int8")
    ids = jnp.ones((3, 5), jnp.int32)
    forward = jax.jit(lambda p, i, m: apply(p, i, m, config=checkpoint.config, dtype=jnp.int8))
    hlo = forward.lower(params, ids, ids).compile().as_text()
    shapes = {
        leaf.shape
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if path[-1].key == "kernel" and leaf.dtype == np.int8
    }
    assert shapes and "s8[" in hlo
    assert not [s for s in shapes if f"s32[{s[0]},{s[1]}]" in hlo]
