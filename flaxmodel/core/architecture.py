"""What distinguishes one encoder architecture from another, as data.

BERT, RoBERTa and DistilBERT share ``layers.Encoder`` (MPNet extends it with a
relative position bias); an :class:`Architecture` records the rest: the encoder
module, the classification head module, how position ids are derived, and where
each of our parameters lives in the upstream checkpoint.  The
checkpoint converter and the model read these records instead of branching on
architecture names.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.layers import Encoder

# Kinds of upstream tensor groups, which decide how weights convert:
# DENSE: torch Linear (weight [out, in] -> kernel [in, out], bias)
# NORM:  LayerNorm (weight -> scale, bias)
# EMBED: Embedding (weight -> embedding)
DENSE, NORM, EMBED = "dense", "norm", "embed"

# Our module path (inside the params tree) -> (upstream name stem, kind).
TensorNames = dict[tuple[str, ...], tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    # Upstream task models nest the encoder under this attribute ("bert." in "bert.embeddings...").
    checkpoint_prefix: str
    head: type[nn.Module]
    position_ids: Callable[[jax.Array, EncoderConfig], jax.Array]
    encoder_names: Callable[[EncoderConfig], TensorNames]
    # Head stems; "{prefix}" marks those that live under the encoder prefix (BERT's pooler).
    head_names: TensorNames
    # Pre-training heads a base checkpoint may carry; dropped when a fresh head is built.
    pretraining_prefixes: tuple[str, ...]
    # Module of ``(config, dtype)`` called as ``layers.Encoder`` is: embeddings and the layer stack.
    encoder: type[nn.Module] = Encoder

    def detect_prefix(self, keys: Iterable[str]) -> str:
        """The encoder prefix upstream tensors ``keys`` use: task models nest it, bare encoders do not."""
        return self.checkpoint_prefix if any(k.startswith(self.checkpoint_prefix) for k in keys) else ""

    def tensor_names(self, config: EncoderConfig, prefix: str) -> TensorNames:
        """Upstream stem and kind of every parameter module, encoder and head, under ``prefix``.

        The one name table every conversion reads: loading, saving and adapter
        folders all map tensors through it, so no upstream tensor goes unaccounted.
        """
        names = {path: (prefix + stem, kind) for path, (stem, kind) in self.encoder_names(config).items()}
        names.update({path: (stem.format(prefix=prefix), kind) for path, (stem, kind) in self.head_names.items()})
        return names

    def pretraining_keys(self, prefix: str) -> tuple[str, ...]:
        """Key prefixes of the pre-training heads of a base checkpoint using ``prefix``."""
        return tuple(p.format(prefix=prefix) for p in self.pretraining_prefixes)


def absolute_position_ids(input_ids: jax.Array, config: EncoderConfig) -> jax.Array:
    del config
    return jnp.broadcast_to(jnp.arange(input_ids.shape[1], dtype=jnp.int32), input_ids.shape)


def bert_style_encoder_names(config: EncoderConfig) -> TensorNames:
    """Names used by BERT and RoBERTa (``RobertaModel`` reuses BERT's modules)."""
    names: TensorNames = {
        ("encoder", "embeddings", "word"): ("embeddings.word_embeddings", EMBED),
        ("encoder", "embeddings", "position"): ("embeddings.position_embeddings", EMBED),
        ("encoder", "embeddings", "norm"): ("embeddings.LayerNorm", NORM),
    }
    if config.type_vocab_size:
        names[("encoder", "embeddings", "token_type")] = ("embeddings.token_type_embeddings", EMBED)
    for i in range(config.num_layers):
        ours, theirs = ("encoder", f"layer_{i}"), f"encoder.layer.{i}."
        names.update(
            {
                (*ours, "attention", "query"): (theirs + "attention.self.query", DENSE),
                (*ours, "attention", "key"): (theirs + "attention.self.key", DENSE),
                (*ours, "attention", "value"): (theirs + "attention.self.value", DENSE),
                (*ours, "attention", "output"): (theirs + "attention.output.dense", DENSE),
                (*ours, "attention_norm"): (theirs + "attention.output.LayerNorm", NORM),
                (*ours, "ffn", "intermediate"): (theirs + "intermediate.dense", DENSE),
                (*ours, "ffn", "output"): (theirs + "output.dense", DENSE),
                (*ours, "ffn_norm"): (theirs + "output.LayerNorm", NORM),
            }
        )
    return names
