"""MPNet (all-mpnet-base-v2 among them): the shared layers plus a relative position bias.

Upstream ``MPNetModel`` is the post-layer-norm encoder of :mod:`flaxmodel.core.layers`
with three differences: no token types; position ids counted as RoBERTa's are
(after padding index 1); and a T5-style relative position bias, one learned scalar
per head and distance bucket (``encoder.relative_attention_bias``), computed once
from the sequence length and added to every layer's attention scores.  The head of
``MPNetForSequenceClassification`` is RoBERTa's: ``out_proj(dropout(tanh(dense(dropout(h[:, 0])))))``.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxmodel.core.architecture import DENSE, EMBED, NORM, Architecture, TensorNames
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.layers import Embeddings, layer_stack, padding_bias
from flaxmodel.core.roberta import RobertaHead, roberta_position_ids

# Distances beyond this share the last bucket, as transformers' MPNet has it.
MAX_DISTANCE = 128


@functools.lru_cache(maxsize=64)
def relative_position_buckets(length: int, num_buckets: int, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """Bucket of each (query, key) pair of a ``length``-token sequence, as transformers' MPNet computes it.

    Half the buckets are for keys before the query, half for keys after it; within a
    half, distances below a quarter of ``num_buckets`` get a bucket each, longer ones
    share logarithmically wider buckets up to ``max_distance``.  Only the length
    matters (upstream ignores padding here), so under ``jit`` this is a constant.

    Args:
      length: sequence length (padding included).
      num_buckets: buckets of both directions together.
      max_distance: distance from which everything falls into the last bucket.

    Returns:
      int32 ``[length, length]``.
    """
    positions = np.arange(length, dtype=np.int64)
    n = positions[:, None] - positions[None, :]  # query minus key: upstream's -relative_position
    half = num_buckets // 2
    exact = half // 2
    buckets = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    # float32 throughout, as upstream's torch computes it, so distances that land exactly on a bucket
    # edge (16, 32, 64 with 32 buckets) round the same way.
    ratio = np.maximum(n, 1).astype(np.float32) / np.float32(exact)
    scaled = np.log(ratio) / np.float32(math.log(max_distance / exact)) * np.float32(half - exact)
    large = np.minimum(exact + scaled.astype(np.int64), half - 1)
    table = (buckets + np.where(n < exact, n, large)).astype(np.int32)
    table.setflags(write=False)  # cached and shared by every trace of this length
    return table


class MPNetEncoder(nn.Module):
    """Embeddings, the shared relative position bias and the layer stack; called as ``layers.Encoder`` is.

    Returns the last hidden states ``[batch, length, hidden]``, or ``[batch, 1, hidden]``
    with ``first_token_only`` (the last layer computed for the first position alone,
    its keys and values still from every token).
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
        cfg = self.config
        x = Embeddings(cfg, name="embeddings")(input_ids, position_ids, deterministic) if hidden is None else hidden
        table = nn.Embed(
            cfg.relative_attention_buckets,
            cfg.num_heads,
            embedding_init=nn.initializers.normal(cfg.initializer_range),
            name="relative_attention_bias",
        )
        # float32 [1, heads, length, length], once for all layers.
        buckets = relative_position_buckets(input_ids.shape[1], cfg.relative_attention_buckets)
        position_bias = table(jnp.asarray(buckets)).transpose(2, 0, 1)[None]
        mask_bias = padding_bias(attention_mask)
        return layer_stack(cfg, self.dtype, x, mask_bias, deterministic, first_token_only, position_bias, layers)


def mpnet_encoder_names(config: EncoderConfig) -> TensorNames:
    """Our module path -> upstream ``MPNetModel`` name stem, for every encoder parameter."""
    names: TensorNames = {
        ("encoder", "embeddings", "word"): ("embeddings.word_embeddings", EMBED),
        ("encoder", "embeddings", "position"): ("embeddings.position_embeddings", EMBED),
        ("encoder", "embeddings", "norm"): ("embeddings.LayerNorm", NORM),
        ("encoder", "relative_attention_bias"): ("encoder.relative_attention_bias", EMBED),
    }
    for i in range(config.num_layers):
        ours, theirs = ("encoder", f"layer_{i}"), f"encoder.layer.{i}."
        names.update(
            {
                (*ours, "attention", "query"): (theirs + "attention.attn.q", DENSE),
                (*ours, "attention", "key"): (theirs + "attention.attn.k", DENSE),
                (*ours, "attention", "value"): (theirs + "attention.attn.v", DENSE),
                (*ours, "attention", "output"): (theirs + "attention.attn.o", DENSE),
                (*ours, "attention_norm"): (theirs + "attention.LayerNorm", NORM),
                (*ours, "ffn", "intermediate"): (theirs + "intermediate.dense", DENSE),
                (*ours, "ffn", "output"): (theirs + "output.dense", DENSE),
                (*ours, "ffn_norm"): (theirs + "output.LayerNorm", NORM),
            }
        )
    return names


MPNET = Architecture(
    name="mpnet",
    checkpoint_prefix="mpnet.",
    head=RobertaHead,
    # The config reader holds pad_token_id to upstream's padding index 1, so RoBERTa's rule is MPNet's.
    position_ids=roberta_position_ids,
    encoder_names=mpnet_encoder_names,
    head_names={
        ("head", "dense"): ("classifier.dense", DENSE),
        ("head", "out_proj"): ("classifier.out_proj", DENSE),
    },
    # MPNetModel's pooler (in sentence-transformers' checkpoints) is unused by the classification head upstream.
    pretraining_prefixes=("lm_head.", "{prefix}pooler.", "pooler."),
    encoder=MPNetEncoder,
)
