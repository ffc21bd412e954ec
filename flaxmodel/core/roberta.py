"""RoBERTa and XLM-RoBERTa (Cardiff's twitter-roberta moderation models among them).

Same encoder as BERT with two upstream differences: position ids count only real
tokens and start after the padding index (``pad_token_id + 1``), and the head is
``out_proj(dropout(tanh(dense(dropout(h[:, 0])))))`` with no pooler.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxmodel.core.architecture import DENSE, Architecture, bert_style_encoder_names
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.layers import dense


def roberta_position_ids(input_ids: jax.Array, config: EncoderConfig) -> jax.Array:
    is_token = (input_ids != config.pad_token_id).astype(jnp.int32)
    return jnp.cumsum(is_token, axis=1) * is_token + config.pad_token_id


class RobertaHead(nn.Module):
    config: EncoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden: jax.Array, deterministic: bool) -> jax.Array:
        cfg = self.config
        dropout = nn.Dropout(cfg.classifier_dropout)
        x = dropout(hidden[:, 0], deterministic=deterministic)
        x = jnp.tanh(dense(cfg.hidden_size, cfg, self.dtype, "dense")(x))
        x = dropout(x, deterministic=deterministic)
        return dense(cfg.num_labels, cfg, self.dtype, "out_proj")(x)


ROBERTA = Architecture(
    name="roberta",
    checkpoint_prefix="roberta.",
    head=RobertaHead,
    position_ids=roberta_position_ids,
    encoder_names=bert_style_encoder_names,
    head_names={
        ("head", "dense"): ("classifier.dense", DENSE),
        ("head", "out_proj"): ("classifier.out_proj", DENSE),
    },
    # RobertaModel's pooler is unused by the classification head upstream too.
    pretraining_prefixes=("lm_head.", "{prefix}pooler.", "pooler."),
)
