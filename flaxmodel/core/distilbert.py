"""DistilBERT: the shared encoder under other weight names, no token types, and a
``classifier(dropout(relu(pre_classifier(h[:, 0]))))`` head.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxmodel.core.architecture import (
    DENSE,
    EMBED,
    NORM,
    Architecture,
    TensorNames,
    absolute_position_ids,
)
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.layers import dense


class DistilBertHead(nn.Module):
    config: EncoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden: jax.Array, deterministic: bool) -> jax.Array:
        cfg = self.config
        x = jax.nn.relu(dense(cfg.hidden_size, cfg, self.dtype, "pre_classifier")(hidden[:, 0]))
        x = nn.Dropout(cfg.classifier_dropout)(x, deterministic=deterministic)
        return dense(cfg.num_labels, cfg, self.dtype, "classifier")(x)


def distilbert_encoder_names(config: EncoderConfig) -> TensorNames:
    names: TensorNames = {
        ("encoder", "embeddings", "word"): ("embeddings.word_embeddings", EMBED),
        ("encoder", "embeddings", "position"): ("embeddings.position_embeddings", EMBED),
        ("encoder", "embeddings", "norm"): ("embeddings.LayerNorm", NORM),
    }
    for i in range(config.num_layers):
        ours, theirs = ("encoder", f"layer_{i}"), f"transformer.layer.{i}."
        names.update(
            {
                (*ours, "attention", "query"): (theirs + "attention.q_lin", DENSE),
                (*ours, "attention", "key"): (theirs + "attention.k_lin", DENSE),
                (*ours, "attention", "value"): (theirs + "attention.v_lin", DENSE),
                (*ours, "attention", "output"): (theirs + "attention.out_lin", DENSE),
                (*ours, "attention_norm"): (theirs + "sa_layer_norm", NORM),
                (*ours, "ffn", "intermediate"): (theirs + "ffn.lin1", DENSE),
                (*ours, "ffn", "output"): (theirs + "ffn.lin2", DENSE),
                (*ours, "ffn_norm"): (theirs + "output_layer_norm", NORM),
            }
        )
    return names


DISTILBERT = Architecture(
    name="distilbert",
    checkpoint_prefix="distilbert.",
    head=DistilBertHead,
    position_ids=absolute_position_ids,
    encoder_names=distilbert_encoder_names,
    head_names={
        ("head", "pre_classifier"): ("pre_classifier", DENSE),
        ("head", "classifier"): ("classifier", DENSE),
    },
    pretraining_prefixes=("vocab_transform.", "vocab_layer_norm.", "vocab_projector."),
)
