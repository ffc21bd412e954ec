"""The sequence classifier and the pure functions that run it.

``SequenceClassifier`` composes the architecture's encoder (the shared
:class:`~flaxmodel.core.layers.Encoder`, or MPNet's) with its head, and with
the optional :class:`TargetHead` when the config names target categories.  :func:`apply` is the pure core every caller uses:
``apply(params, input_ids, attention_mask) -> logits`` with no state besides its
arguments, so it can be jitted, vmapped, differentiated or shared by threads.
Its ``dtype`` is the precision of the encoder's matrix multiplies
(:mod:`flaxmodel.core.precision`): ``jnp.float32``, ``jnp.bfloat16`` (bfloat16
inputs, float32 accumulation; differentiable, so training uses it too) or
``jnp.int8`` (parameters from ``prepare_params(params, "int8")``; inference only).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxmodel.core.architecture import Architecture
from flaxmodel.core.bert import BERT
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.distilbert import DISTILBERT
from flaxmodel.core.layers import ACTIVATIONS, dense
from flaxmodel.core.mpnet import MPNET
from flaxmodel.core.roberta import ROBERTA

ARCHITECTURES: dict[str, Architecture] = {arch.name: arch for arch in (BERT, ROBERTA, DISTILBERT, MPNET)}

Params = dict


class TargetHead(nn.Module):
    """Multi-label head over the first token: which groups a text attacks, one logit per category.

    A GELU layer of ``config.target_hidden_size`` units, then one output per ``config.targets``;
    float32, like the class head, since it reads one row per text.
    """

    config: EncoderConfig

    @nn.compact
    def __call__(self, hidden: jax.Array) -> jax.Array:
        """Args: hidden: float ``[batch, tokens, hidden]`` (only token 0 is read). Returns: ``[batch, len(targets)]``."""
        cfg = self.config
        x = ACTIVATIONS["gelu"](dense(cfg.target_hidden_size, cfg, jnp.float32, "dense")(hidden[:, 0]))
        return dense(len(cfg.targets), cfg, jnp.float32, "out_proj")(x)


class SequenceClassifier(nn.Module):
    """Encoder in precision ``dtype``, then the architecture's head in float32 (see the module docstring)."""

    config: EncoderConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.arch = ARCHITECTURES[self.config.architecture]
        self.encoder = self.arch.encoder(self.config, self.dtype)
        # One row per text: a negligible share of the work, and its output is the scores themselves.
        self.head = self.arch.head(self.config, jnp.float32)
        if self.config.targets:
            self.target_head = TargetHead(self.config)

    def encode(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        deterministic: bool = True,
        first_token_only: bool = False,
        layers: tuple[int, int] | None = None,
        hidden: jax.Array | None = None,
    ) -> jax.Array:
        position_ids = self.arch.position_ids(input_ids, self.config)
        return self.encoder(input_ids, attention_mask, position_ids, deterministic, first_token_only, layers, hidden)

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        deterministic: bool = True,
        start: int = 0,
        hidden: jax.Array | None = None,
    ) -> jax.Array:
        # Every head reads the first token's hidden state only; the rest of the last layer is skipped.
        layers = (start, self.config.num_layers)
        hidden = self.encode(input_ids, attention_mask, deterministic, True, layers, hidden)
        logits = self.head(hidden, deterministic)
        if not self.config.targets:
            return logits
        return jnp.concatenate([logits, self.target_head(hidden)], axis=-1)


def init_params(config: EncoderConfig, rng: jax.Array) -> Params:
    """Randomly initialised parameters (float32) in the layout checkpoints load into."""
    ids = jnp.zeros((1, 8), jnp.int32)
    return SequenceClassifier(config).init(rng, ids, jnp.ones_like(ids))["params"]


def apply(
    params: Params,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    *,
    config: EncoderConfig,
    dtype: jnp.dtype = jnp.float32,
    start: int = 0,
    hidden: jax.Array | None = None,
) -> jax.Array:
    """Logits of a padded batch, the target head's after the classes'; inference mode.

    Args:
      params: the parameter tree; for ``dtype=jnp.int8`` as
        :func:`flaxmodel.core.precision.prepare_params` makes it.
      input_ids, attention_mask: int32 ``[batch, length]``.
      config: the model's configuration.
      dtype: precision of the encoder's matrix multiplies (module docstring).
      start: with ``hidden``, run the layers from ``start`` on only.
      hidden: float32 ``[batch, length, hidden_size]``, what enters layer ``start``
        (:func:`hidden_states` with ``stop=start``); it replaces the embeddings and the layers below.

    Returns:
      float32 ``[batch, config.num_outputs]``: ``num_labels`` class logits, then one per
      ``config.targets`` category.
    """
    return SequenceClassifier(config, dtype).apply({"params": params}, input_ids, attention_mask, True, start, hidden)


def hidden_states(
    params: Params,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    *,
    config: EncoderConfig,
    dtype: jnp.dtype = jnp.float32,
    first_token_only: bool = False,
    stop: int | None = None,
) -> jax.Array:
    """Hidden states of the encoder: after its last layer, or entering layer ``stop``.

    Args:
      params, input_ids, attention_mask, config, dtype: as for :func:`apply`.
      first_token_only: return the first token's row only (what the heads read; the rest of the
        last layer is skipped).
      stop: run the embeddings and the layers below ``stop`` only (None: all layers), so that
        :func:`apply` with ``start=stop`` finishes the forward pass from them.

    Returns:
      ``[batch, length, hidden]``; with ``first_token_only``, ``[batch, hidden]``.
    """
    model = SequenceClassifier(config, dtype)
    layers = (0, config.num_layers if stop is None else stop)
    args = (input_ids, attention_mask, True, first_token_only, layers)
    hidden = model.apply({"params": params}, *args, method=SequenceClassifier.encode)
    return hidden[:, 0] if first_token_only else hidden


def forward_flops(config: EncoderConfig, rows: int, length: int, first_token_only: bool = True) -> int:
    """Matrix-multiply FLOPs (two per multiply-add) of one classifier forward pass over a ``[rows, length]`` batch.

    Counts the Q/K/V/output projections, the feed-forward pair, the two attention
    products and the head's dense layers; embeddings, norms, softmax and
    activations are left out (a few percent at these sizes).  Padding counts: it
    is computed like any other token.  ``first_token_only`` counts the last layer
    as :class:`SequenceClassifier` runs it (keys and values for every token, the
    rest for the first one); ``False`` counts a full last layer, as transformers runs it.
    """
    hidden, inter = config.hidden_size, config.intermediate_size
    attention = 4 * length * hidden  # scores and context, per query position
    full_layer = length * (8 * hidden * hidden + 4 * hidden * inter + attention)
    last_layer = (
        length * 4 * hidden * hidden + 4 * hidden * hidden + 4 * hidden * inter + attention
        if first_token_only
        else full_layer
    )
    head = 2 * hidden * hidden + 2 * hidden * config.num_labels
    head += 2 * config.target_hidden_size * (hidden + len(config.targets))
    return rows * ((config.num_layers - 1) * full_layer + last_layer + head)


def probabilities(logits: jax.Array, config: EncoderConfig) -> jax.Array:
    """Scores of :func:`apply`'s logits ``[batch, num_outputs]``, in the same layout.

    The classes get a softmax for single-label problems and independent sigmoids for
    multi-label ones; target categories always get independent sigmoids.
    """
    classes, targets = logits[..., : config.num_labels], logits[..., config.num_labels :]
    scores = jax.nn.sigmoid(classes) if config.multi_label else jax.nn.softmax(classes, axis=-1)
    return jnp.concatenate([scores, jax.nn.sigmoid(targets)], axis=-1) if config.targets else scores
