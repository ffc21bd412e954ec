"""BERT (and MiniLM, which is a small BERT): pooler + classifier head and weight names.

Upstream ``BertForSequenceClassification`` classifies the pooled first token:
``classifier(dropout(tanh(pooler(h[:, 0]))))``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxmodel.core.architecture import DENSE, Architecture, absolute_position_ids, bert_style_encoder_names
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.layers import dense


class BertHead(nn.Module):
    config: EncoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden: jax.Array, deterministic: bool) -> jax.Array:
        cfg = self.config
        pooled = jnp.tanh(dense(cfg.hidden_size, cfg, self.dtype, "pooler")(hidden[:, 0]))
        pooled = nn.Dropout(cfg.classifier_dropout)(pooled, deterministic=deterministic)
        return dense(cfg.num_labels, cfg, self.dtype, "classifier")(pooled)


BERT = Architecture(
    name="bert",
    checkpoint_prefix="bert.",
    head=BertHead,
    position_ids=absolute_position_ids,
    encoder_names=bert_style_encoder_names,
    head_names={
        ("head", "pooler"): ("{prefix}pooler.dense", DENSE),
        ("head", "classifier"): ("classifier", DENSE),
    },
    pretraining_prefixes=("cls.",),
)
