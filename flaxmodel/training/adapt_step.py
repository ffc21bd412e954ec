"""The pure jitted steps of adapting: the top layers learn over cached hidden states.

The layers below ``spec.start`` keep the starting model's weights, so what
enters layer ``start`` is computed once per text (:func:`lower_states`) and
every step runs the top layers and the head only: a third of the full model's
cost for the top two of six layers.  The loss is the partial-label loss of the
user's labels plus ``distill_weight`` times the cross-entropy, within each
row's allowed classes, with the starting model's probabilities renormalised to
them: what a label leaves open (hate or offensive, under "offensive") stays as
the starting model had it.  A starting model's target-group head stays frozen
and reads the adapted encoder, so the same weight keeps its scores too: binary
cross-entropy with the starting model's target scores on every row.  The learning rate is an argument, not part of the
compiled program, so every rate of the selection grid and every schedule length
shares one compiled step per length bucket.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import struct, traverse_util

from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.lora import LoraConfig
from flaxmodel.core.model import Params, SequenceClassifier, apply, hidden_states, probabilities
from flaxmodel.training.state import DECAYED_LEAVES, assemble, partial_label_loss


@dataclasses.dataclass(frozen=True)
class AdaptSpec:
    """What the compiled steps depend on besides their array arguments (hashable: a static argument)."""

    model_config: EncoderConfig
    lora: LoraConfig
    start: int
    distill_weight: float
    refit_targets: bool = False  # the target head trains (the user's rows name groups) instead of staying frozen
    weight_decay: float = 0.01
    clip_norm: float = 1.0


@struct.dataclass
class AdaptBatch:
    """One padded batch; rows past the real ones weigh 0.

    Attributes:
      hidden: float32 ``[rows, length, hidden]`` what enters layer ``spec.start``.
      ids, mask: int32 ``[rows, length]``.
      allowed: float32 ``[rows, num_labels]`` 1 on the classes the row's label allows (all for unlabeled rows).
      soft: float32 ``[rows, num_labels]`` the starting model's probabilities renormalised within ``allowed``.
      weights: float32 ``[rows]`` records each row stands for, 0 for padding.
      soft_targets: float32 ``[rows, targets]`` the starting model's target-group scores, or the row's own
        groups where it names them (no columns without a target head).
      said_targets: float32 ``[rows, targets]`` 1 where ``soft_targets`` is the row's own (a label: weight 1),
        0 where it is the starting model's (weight ``distill_weight``).
    """

    hidden: jax.Array
    ids: jax.Array
    mask: jax.Array
    allowed: jax.Array
    soft: jax.Array
    weights: jax.Array
    soft_targets: jax.Array
    said_targets: jax.Array


@struct.dataclass
class AdaptState:
    """Step count, trained parameters (``{"params": head and norms, "lora": adapters}``), optimizer state, key."""

    step: jax.Array
    trainable: Params
    opt_state: optax.OptState
    dropout_key: jax.Array


def _optimizer(spec: AdaptSpec) -> optax.GradientTransformation:
    def decay_mask(tree: Params) -> Params:
        return traverse_util.path_aware_map(lambda path, _: path[-1] in DECAYED_LEAVES, tree)

    # Rate 1 here; each step scales the update by its own rate, so no rate is baked into the program.
    return optax.chain(optax.clip_by_global_norm(spec.clip_norm), optax.adamw(1.0, weight_decay=spec.weight_decay, mask=decay_mask))


def initial_adapt_state(trainable: Params, dropout_key: jax.Array, spec: AdaptSpec) -> AdaptState:
    """Step 0 with a fresh optimizer state, committed to the first device like the step's outputs."""
    trainable = jax.tree_util.tree_map(jnp.asarray, trainable)
    state = AdaptState(jnp.asarray(0, jnp.int32), trainable, _optimizer(spec).init(trainable), jnp.asarray(dropout_key))
    return jax.device_put(state, jax.local_devices()[0])


def adapt_loss(outputs: jax.Array, batch: AdaptBatch, distill_weight: float) -> jax.Array:
    """The batch's weighted mean loss.

    Args:
      outputs: float32 ``[rows, num_labels + targets]`` logits, the target head's after the classes'.
      batch: the allowed classes, the renormalised teacher probabilities, the row weights and the teacher's
        target scores.
      distill_weight: weight of the within-allowed cross-entropy, and of the target scores' binary
        cross-entropy, beside the partial-label loss.

    Returns:
      float32 ``[]``.
    """
    logits, target_logits = outputs[:, : batch.allowed.shape[-1]], outputs[:, batch.allowed.shape[-1] :]
    # Padding rows allow nothing; give them every class so their (zero-weighted) terms stay finite.
    allowed = jnp.where(batch.weights[:, None] > 0, batch.allowed, 1.0)
    losses = partial_label_loss(logits, allowed)
    within = jnp.where(allowed > 0, logits.astype(jnp.float32), -jnp.inf)
    log_q = within - jax.nn.logsumexp(within, axis=-1, keepdims=True)
    distilled = -jnp.where(allowed > 0, batch.soft * log_q, 0.0).sum(axis=-1)
    cells = optax.sigmoid_binary_cross_entropy(target_logits.astype(jnp.float32), batch.soft_targets)
    # Held scores weigh as one distribution (their mean); each group a row names, as one label.  A model
    # without a target head has no columns here.
    kept = (cells * (1.0 - batch.said_targets)).sum(axis=-1) / max(1, cells.shape[-1])
    said = (cells * batch.said_targets).sum(axis=-1)
    losses = losses + distill_weight * (distilled + kept) + said
    return (losses * batch.weights).sum() / jnp.maximum(batch.weights.sum(), jnp.finfo(jnp.float32).tiny)


def _logits(trainable: Params, frozen: Params, batch: AdaptBatch, spec: AdaptSpec, key: jax.Array | None) -> jax.Array:
    params = assemble(frozen, trainable, spec.lora)
    model = SequenceClassifier(spec.model_config)
    rngs = None if key is None else {"dropout": key}
    return model.apply({"params": params}, batch.ids, batch.mask, key is None, spec.start, batch.hidden, rngs=rngs)


@functools.partial(jax.jit, static_argnames="spec")
def adapt_step(
    state: AdaptState, batch: AdaptBatch, frozen: Params, learning_rate: jax.Array, *, spec: AdaptSpec
) -> tuple[AdaptState, jax.Array]:
    """One optimizer step.

    Args:
      state: the state before the step.
      batch: a padded batch (:class:`AdaptBatch`).
      frozen: the top layers' parameters that do not train.
      learning_rate: float32 ``[]`` this step's rate.
      spec: the model and the loss (static).

    Returns:
      ``(state after the step, the batch's loss)``.
    """
    key = jax.random.fold_in(state.dropout_key, state.step)

    def loss_fn(trainable: Params) -> jax.Array:
        return adapt_loss(_logits(trainable, frozen, batch, spec, key), batch, spec.distill_weight)

    loss, grads = jax.value_and_grad(loss_fn)(state.trainable)
    updates, opt_state = _optimizer(spec).update(grads, state.opt_state, state.trainable)
    updates = jax.tree_util.tree_map(lambda u: learning_rate * u, updates)
    trainable = optax.apply_updates(state.trainable, updates)
    return state.replace(step=state.step + 1, trainable=trainable, opt_state=opt_state), loss


@functools.partial(jax.jit, static_argnames="spec")
def adapt_probabilities(trainable: Params, frozen: Params, batch: AdaptBatch, *, spec: AdaptSpec) -> jax.Array:
    """float32 ``[rows, num_outputs]`` class probabilities, then target scores, of the adapted model (inference
    mode)."""
    return probabilities(_logits(trainable, frozen, batch, spec, None), spec.model_config)


@functools.partial(jax.jit, static_argnames=("config", "stop"))
def lower_states(params: Params, ids: jax.Array, mask: jax.Array, *, config: EncoderConfig, stop: int) -> jax.Array:
    """float32 ``[rows, length, hidden]``: what enters layer ``stop`` of the starting model."""
    return hidden_states(params, ids, mask, config=config, stop=stop)


@functools.partial(jax.jit, static_argnames=("config", "start"))
def upper_probabilities(
    params: Params, hidden: jax.Array, ids: jax.Array, mask: jax.Array, *, config: EncoderConfig, start: int
) -> jax.Array:
    """float32 ``[rows, num_outputs]``: the starting model's class probabilities and target scores finished from
    ``hidden``."""
    return probabilities(apply(params, ids, mask, config=config, start=start, hidden=hidden), config)
