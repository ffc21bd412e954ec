"""Encoder building blocks shared by every architecture (BERT, RoBERTa, DistilBERT).

All three are the same post-layer-norm transformer; they differ only in weight
names, position ids, token types and the classification head, which live in
``bert.py``, ``roberta.py`` and ``distilbert.py``.  Written in Flax Linen rather
than NNX on purpose: Linen keeps parameters as a plain pytree outside the module,
which is exactly the pure ``apply(params, input_ids, attention_mask)`` contract the
Beam workers share between threads, and what checkpoint conversion, LoRA merging
and orbax checkpointing manipulate directly.  ``dtype`` is the precision of the
matrix multiplies (float32, bfloat16 or int8, see :mod:`flaxmodel.core.precision`);
activations, layer norms, GELU, softmax and residual adds are float32 in every
precision, so bfloat16 rounds only what a matrix unit reads and nothing is emulated
element by element (with those steps in bfloat16 too, MiniLM ran at 434 texts/s against
605 in float32 on an AVX512-BF16 CPU: issue 14).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.precision import KERNEL_COLUMN_SUMS, KERNEL_SCALE, matmul


def _gelu_exact(x: jax.Array) -> jax.Array:
    # torch's formula; jax.nn.gelu(approximate=False) goes through erfc, whose
    # piecewise expansion costs several times more per element on CPU.
    return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def _gelu_tanh(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


def _quick_gelu(x: jax.Array) -> jax.Array:
    return x * jax.nn.sigmoid(1.702 * x)


# Names as transformers' ACT2FN spells them.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": _gelu_exact,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


class Dense(nn.Module):
    """``x @ kernel + bias`` with the product in precision ``dtype``; float32 in and out.

    Parameter names and initialisers are ``nn.Dense``'s, so checkpoints, LoRA and
    training see the same tree.  With ``dtype`` int8 the tree holds the int8
    kernel, its ``kernel_scale`` and ``kernel_column_sums``
    (:func:`flaxmodel.core.precision.prepare_params`).
    """

    features: int
    init_range: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (x.shape[-1], self.features)
        if self.dtype == jnp.int8:
            kernel = self.param("kernel", nn.initializers.zeros_init(), shape, jnp.int8)
            scale = self.param(KERNEL_SCALE, nn.initializers.ones_init(), (self.features,), jnp.float32)
            sums = self.param(KERNEL_COLUMN_SUMS, nn.initializers.zeros_init(), (self.features,), jnp.int32)
        else:
            kernel = self.param("kernel", nn.initializers.normal(self.init_range), shape, jnp.float32)
            scale = sums = None
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return matmul(x, kernel, self.dtype, scale, sums) + bias


def dense(features: int, config: EncoderConfig, dtype: Any, name: str) -> Dense:
    """A :class:`Dense` layer of ``features`` outputs initialised as ``config`` says."""
    return Dense(features, config.initializer_range, dtype, name=name)


def attention_dtype(dtype: Any) -> Any:
    """Input dtype of the two attention products: bfloat16 for the reduced paths (bfloat16 and int8), else float32.

    int8 quantizes weights, and its activations are quantized per row; the attention
    products multiply two activations, so they take bfloat16 (float32 accumulation, the
    softmax between them float32): in float32 they were 13% of the int8 forward on an AMX
    CPU, run by a plain AVX-512 kernel, against AMX tiles in bfloat16 (benchmarks/README.md).
    """
    return jnp.float32 if dtype == jnp.float32 else jnp.bfloat16


def layer_norm(config: EncoderConfig, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=jnp.float32, name=name)


class Embeddings(nn.Module):
    """Word + position (+ token type) embeddings, then layer norm and dropout; float32 in every precision."""

    config: EncoderConfig

    @nn.compact
    def __call__(self, input_ids: jax.Array, position_ids: jax.Array, deterministic: bool) -> jax.Array:
        cfg = self.config
        init = nn.initializers.normal(cfg.initializer_range)
        x = nn.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=init, name="word")(input_ids)
        x = x + nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, embedding_init=init, name="position")(
            position_ids
        )
        if cfg.type_vocab_size:
            # Single-text classification: every token has type 0, so add that one row.
            token_type = nn.Embed(cfg.type_vocab_size, cfg.hidden_size, embedding_init=init, name="token_type")
            x = x + token_type.embedding[0]
        x = layer_norm(cfg, "norm")(x)
        return nn.Dropout(cfg.hidden_dropout)(x, deterministic=deterministic)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with an additive padding mask.

    ``queries`` attends from ``x[:, :queries]`` only (all positions when None):
    keys and values still come from every position.  ``position_bias`` (float32
    ``[1, heads, queries, length]``, MPNet's relative positions) is added to the
    scaled scores when given.
    """

    config: EncoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        mask_bias: jax.Array,
        deterministic: bool,
        queries: int | None = None,
        position_bias: jax.Array | None = None,
    ) -> jax.Array:
        cfg = self.config
        batch = x.shape[0]

        def heads(t: jax.Array) -> jax.Array:
            # [batch, heads, length, head_dim]: both attention products become plain
            # batched matmuls, which XLA's CPU backend runs faster than the einsums
            # with heads in the middle (it transposed around each of them anyway).
            return t.reshape(batch, t.shape[1], cfg.num_heads, cfg.head_dim).transpose(0, 2, 1, 3)

        products = attention_dtype(self.dtype)
        q = heads(dense(cfg.hidden_size, cfg, self.dtype, "query")(x[:, :queries])).astype(products)
        k = heads(dense(cfg.hidden_size, cfg, self.dtype, "key")(x)).astype(products)
        v = heads(dense(cfg.hidden_size, cfg, self.dtype, "value")(x)).astype(products)
        scores = jnp.matmul(q, k.transpose(0, 1, 3, 2), preferred_element_type=jnp.float32) / math.sqrt(cfg.head_dim)
        if position_bias is not None:
            scores = scores + position_bias
        scores = scores + mask_bias
        # The softmax, normalized after the second product: dividing the [.., queries, head_dim] context by the
        # row sums instead of the [.., queries, length] weights.  Same function (dropout on the unnormalized
        # weights is dropout on the weights), and XLA's CPU backend no longer fuses the two products and the
        # softmax into one slow kernel: the attention block ran 2.3x faster at length 128 on the 2-core AMD EPYC.
        unnormalized = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True)))
        dropped = nn.Dropout(cfg.attention_dropout)(unnormalized, deterministic=deterministic).astype(products)
        context = jnp.matmul(dropped, v, preferred_element_type=jnp.float32) / unnormalized.sum(axis=-1, keepdims=True)
        context = context.transpose(0, 2, 1, 3).reshape(batch, q.shape[2], cfg.hidden_size)
        return dense(cfg.hidden_size, cfg, self.dtype, "output")(context)


class FeedForward(nn.Module):
    config: EncoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        h = ACTIVATIONS[cfg.hidden_act](dense(cfg.intermediate_size, cfg, self.dtype, "intermediate")(x))
        return dense(cfg.hidden_size, cfg, self.dtype, "output")(h)


class TransformerLayer(nn.Module):
    """Post-layer-norm block: x + attention -> norm -> x + feed-forward -> norm.

    With ``queries`` set, only the first ``queries`` positions are computed and returned;
    ``position_bias`` goes to :class:`SelfAttention`.
    """

    config: EncoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        mask_bias: jax.Array,
        deterministic: bool,
        queries: int | None = None,
        position_bias: jax.Array | None = None,
    ) -> jax.Array:
        cfg = self.config
        dropout = nn.Dropout(cfg.hidden_dropout)
        h = SelfAttention(cfg, self.dtype, name="attention")(x, mask_bias, deterministic, queries, position_bias)
        x = x[:, :queries]
        x = layer_norm(cfg, "attention_norm")(x + dropout(h, deterministic=deterministic))
        h = FeedForward(cfg, self.dtype, name="ffn")(x)
        return layer_norm(cfg, "ffn_norm")(x + dropout(h, deterministic=deterministic))


class Encoder(nn.Module):
    """Embeddings and the layer stack; returns the last hidden states ``[batch, length, hidden]``.

    ``first_token_only`` computes the last layer for the first position alone and
    returns ``[batch, 1, hidden]``: all a classification head reads.  Its keys and
    values still see every token, so that row is exactly what the full stack gives,
    while the last layer's queries, output projection, feed-forward and norms run
    on one row per text instead of ``length`` (a sixth of MiniLM-L6's FLOPs saved).
    """

    config: EncoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        position_ids: jax.Array,
        deterministic: bool = True,
        first_token_only: bool = False,
        layers: tuple[int, int] | None = None,
        hidden: jax.Array | None = None,
    ) -> jax.Array:
        # ``layers`` runs part of the stack; ``hidden`` (what enters its first layer) then replaces the embeddings.
        if hidden is None:
            hidden = Embeddings(self.config, name="embeddings")(input_ids, position_ids, deterministic)
        mask_bias = padding_bias(attention_mask)
        return layer_stack(self.config, self.dtype, hidden, mask_bias, deterministic, first_token_only, layers=layers)


def padding_bias(attention_mask: jax.Array) -> jax.Array:
    """Additive attention bias ``[batch, 1, 1, length]`` of a ``[batch, length]`` mask: 0 for tokens, a large
    negative for padding, finite so that an all-padding row (batch filler) stays NaN-free."""
    return jnp.where(attention_mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)


def layer_stack(
    config: EncoderConfig,
    dtype: jnp.dtype,
    x: jax.Array,
    mask_bias: jax.Array,
    deterministic: bool,
    first_token_only: bool,
    position_bias: jax.Array | None = None,
    layers: tuple[int, int] | None = None,
) -> jax.Array:
    """The layers ``layer_0 ...`` of the encoder module whose compact ``__call__`` calls this.

    Args:
      x: embeddings ``[batch, length, hidden]``, or what enters layer ``layers[0]``.
      mask_bias: :func:`padding_bias` of the attention mask.
      first_token_only: the model's last layer, if run, computes the first position alone
        (``[batch, 1, hidden]`` out).
      position_bias: an additive bias ``[1, heads, length, length]`` every layer adds to its scores (MPNet's).
      layers: ``(start, stop)``: run layers ``start .. stop - 1`` only; None runs them all.

    Returns:
      The hidden states after the last layer run.
    """
    last = config.num_layers - 1
    start, stop = layers or (0, config.num_layers)
    for i in range(start, stop):
        queries = 1 if first_token_only and i == last else None
        bias = None if position_bias is None else position_bias[:, :, :queries]
        x = TransformerLayer(config, dtype, name=f"layer_{i}")(x, mask_bias, deterministic, queries, bias)
    return x
