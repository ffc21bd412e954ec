"""The training state as one pytree, and the pure jitted steps that advance and evaluate it.

:class:`TrainState` holds everything a run must carry from step to step (and
that a checkpoint saves): the step, the trainable parameters (LoRA adapters
included), the optimizer state, the dropout key and the best validation score
so far.  The frozen base parameters are passed to the steps separately: they
never change, so checkpoints leave them out.  :func:`train_step` is a pure
function of ``(state, batch, frozen)`` returning the next state and the step's
metrics (loss, gradient norm, learning rate); dropout keys on the step, so replaying
the same batches from a restored state gives the same parameters bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct, traverse_util

from flaxmodel.core.architecture import NORM
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.lora import LoraConfig, init_adapters, merge
from flaxmodel.core.model import ARCHITECTURES, Params, SequenceClassifier, apply, probabilities
from flaxmodel.inference.predictor import DTYPES
from flaxmodel.inference.planner import ShapeGrid, predict_in_batches
from flaxmodel.training.batches import Batch

# Parameter leaves that weight decay applies to; biases and norm scales are exempt.
DECAYED_LEAVES = ("kernel", "embedding", "lora_a", "lora_b")
# Top-level modules that always train in full, LoRA or not: the class head and the target head.
HEADS = ("head", "target_head")


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything the compiled train and predict steps depend on besides their array arguments.

    Hashable, so runs with the same model and hyper-parameters (a resumed run,
    a second run in the same process) reuse the compiled programs.
    """

    model_config: EncoderConfig
    lora: LoraConfig | None
    dtype: str
    learning_rate: float
    warmup_steps: int
    total_steps: int
    weight_decay: float
    clip_norm: float
    # Share of the loss that is cross-entropy with the batch's teacher probabilities (0: labels only).
    distill_weight: float = 0.0
    # Weight of the target head's masked binary cross-entropy beside the class loss (0: no target head).
    target_weight: float = 0.0


@struct.dataclass
class TrainState:
    """Everything of a run that changes from step to step; a pytree orbax saves whole.

    Attributes:
      step: int32 ``[]`` optimizer steps taken.
      trainable: ``{"params": trained parameters}`` plus ``"lora"`` adapters with LoRA.
      opt_state: the optimizer's state for ``trainable``.
      dropout_key: uint32 ``[2]``; each step folds its number in.
      best_macro_f1: float32 ``[]`` best validation macro F1 so far, -1 before any.
      best_epoch: int32 ``[]`` the epoch that reached it (or last exported without
        validation data), -1 before any.
    """

    step: jax.Array
    trainable: Params
    opt_state: optax.OptState
    dropout_key: jax.Array
    best_macro_f1: jax.Array
    best_epoch: jax.Array


def split_trainable(
    params: Params, config: EncoderConfig, lora: LoraConfig | None, train_norms: bool, rng: jax.Array
) -> tuple[Params, Params]:
    """Splits a checkpoint's parameters into what trains and what stays frozen.

    Args:
      params: the full parameter tree.
      config: the model's config (which modules are layer norms).
      lora: None trains everything; else adapters, the head and optionally the norms train.
      train_norms: with LoRA, also train the layer norms.
      rng: initialises the adapters.

    Returns:
      ``(trainable, frozen)``: ``trainable`` is ``{"params": ...}`` plus ``"lora"``
      adapters under LoRA; ``frozen`` holds the rest of the tree (empty without LoRA).
    """
    if lora is None:
        return {"params": params}, {}
    norms = set()
    if train_norms:
        names = ARCHITECTURES[config.architecture].encoder_names(config)
        norms = {path for path, (_, kind) in names.items() if kind == NORM}
    trained, frozen = {}, {}
    for path, value in traverse_util.flatten_dict(params).items():
        (trained if path[0] in HEADS or path[:-1] in norms else frozen)[path] = value
    trainable = {"params": traverse_util.unflatten_dict(trained), "lora": init_adapters(params, lora, rng)}
    return trainable, traverse_util.unflatten_dict(frozen)


def assemble(frozen: Params, trainable: Params, lora: LoraConfig | None) -> Params:
    """The full parameter tree the model runs with: frozen + trained, adapters merged in."""
    if lora is None:
        return trainable["params"]
    flat = {**traverse_util.flatten_dict(frozen), **traverse_util.flatten_dict(trainable["params"])}
    return merge(traverse_util.unflatten_dict(flat), trainable["lora"], lora.scale)


def learning_rate_schedule(spec: StepSpec) -> optax.Schedule:
    """The learning rate of each step: linear warm-up from zero to the peak, then linear decay to zero.

    Args:
      spec: the peak rate, the warm-up steps and the run's total steps.

    Returns:
      Step number (from 0) -> learning rate.
    """
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, spec.learning_rate, max(spec.warmup_steps, 1)),
            optax.linear_schedule(spec.learning_rate, 0.0, max(spec.total_steps - spec.warmup_steps, 1)),
        ],
        [spec.warmup_steps],
    )


def make_optimizer(spec: StepSpec) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW under :func:`learning_rate_schedule`."""

    def decay_mask(tree: Params) -> Params:
        return traverse_util.path_aware_map(lambda path, _: path[-1] in DECAYED_LEAVES, tree)

    return optax.chain(
        optax.clip_by_global_norm(spec.clip_norm),
        optax.adamw(learning_rate_schedule(spec), weight_decay=spec.weight_decay, mask=decay_mask),
    )


def initial_state(trainable: Params, dropout_key: jax.Array, spec: StepSpec) -> TrainState:
    """Step 0: fresh optimizer state, no validation score yet.

    Every leaf is committed to the first device, as the step's outputs are: jit
    compiles separately for uncommitted inputs, so an uncommitted initial state
    would cost a second compilation of the step.
    """
    trainable = jax.tree_util.tree_map(jnp.asarray, trainable)
    state = TrainState(
        step=jnp.asarray(0, jnp.int32),
        trainable=trainable,
        opt_state=make_optimizer(spec).init(trainable),
        dropout_key=jnp.asarray(dropout_key),
        best_macro_f1=jnp.asarray(-1.0, jnp.float32),
        best_epoch=jnp.asarray(-1, jnp.int32),
    )
    return jax.device_put(state, jax.local_devices()[0])


def with_best(state: TrainState, macro_f1: float | None, epoch: int) -> TrainState:
    """``state`` recording a new best epoch (and its validation macro F1, unless None), placed like its step."""
    best = {"best_epoch": jnp.asarray(epoch, jnp.int32)}
    if macro_f1 is not None:
        best["best_macro_f1"] = jnp.asarray(macro_f1, jnp.float32)
    # Committed like the rest of the state, so the next step reuses its compiled program.
    return state.replace(**jax.device_put(best, state.step.sharding))


def partial_label_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Minus the log of the summed probability of the classes each row's label allows.

    With one allowed class this is the usual cross-entropy; with several (a
    source that only says "not hate") the model is free to split the
    probability among them.

    Args:
      logits: ``[rows, num_labels]``.
      targets: ``[rows, num_labels]``, 1 for allowed classes, 0 elsewhere; every row allows at least one
        (padding rows included: their loss is weighted 0).

    Returns:
      float32 ``[rows]``.
    """
    logits = logits.astype(jnp.float32)
    allowed = jnp.where(targets > 0, logits, -jnp.inf)
    return jax.nn.logsumexp(logits, axis=-1) - jax.nn.logsumexp(allowed, axis=-1)


def masked_bce(logits: jax.Array, labels: jax.Array, known: jax.Array) -> jax.Array:
    """Mean binary cross-entropy over the known cells of ``[rows, categories]`` (0 when none is known)."""
    losses = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels) * known
    return losses.sum() / jnp.maximum(known.sum(), 1.0)


def _loss(trainable: Params, frozen: Params, batch: Batch, key: jax.Array, spec: StepSpec) -> jax.Array:
    params = assemble(frozen, trainable, spec.lora)
    model = SequenceClassifier(spec.model_config, DTYPES[spec.dtype])
    outputs = model.apply({"params": params}, batch.ids, batch.mask, deterministic=False, rngs={"dropout": key})
    logits, groups = outputs[:, : spec.model_config.num_labels], outputs[:, spec.model_config.num_labels :]
    # Padding rows allow nothing; give them every class so their (zero-weighted) loss stays finite.
    targets = jnp.where(batch.weights[:, None] > 0, batch.targets, 1.0)
    losses = partial_label_loss(logits, targets)
    if spec.distill_weight:
        distilled = -(batch.soft * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)).sum(axis=-1)
        losses = (1 - spec.distill_weight) * losses + spec.distill_weight * distilled
    # A batch of padding rows only (weights all 0) must not divide by zero.
    loss = (losses * batch.weights).sum() / jnp.maximum(batch.weights.sum(), jnp.finfo(jnp.float32).tiny)
    if spec.target_weight:
        loss = loss + spec.target_weight * masked_bce(groups, batch.groups, batch.groups_known)
    return loss


@functools.partial(jax.jit, static_argnames="spec")
def train_step(
    state: TrainState, batch: Batch, frozen: Params, *, spec: StepSpec
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on a padded batch.

    Args:
      state: the state before the step.
      batch: ``[rows, length]`` ids and mask, ``[rows, num_labels]`` targets and teacher
        probabilities, ``[rows]`` weights, ``[rows, categories]`` target groups and their mask.
      frozen: the parameters that do not train (empty without LoRA).
      spec: the model and the optimizer's hyper-parameters (static).

    Returns:
      ``(state after the step, metrics)``; metrics are float32 ``[]`` arrays: ``loss`` (the batch's
      weighted mean loss), ``grad_norm`` (the gradient's global norm before clipping) and
      ``learning_rate`` (the rate this step applied).
    """
    key = jax.random.fold_in(state.dropout_key, state.step)
    loss, grads = jax.value_and_grad(_loss)(state.trainable, frozen, batch, key, spec)
    updates, opt_state = make_optimizer(spec).update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    metrics = {
        "loss": loss,
        "grad_norm": optax.global_norm(grads),
        # The optimizer's own count is the step number: both start at 0 and advance together.
        "learning_rate": jnp.asarray(learning_rate_schedule(spec)(state.step), jnp.float32),
    }
    return state.replace(step=state.step + 1, trainable=trainable, opt_state=opt_state), metrics


@functools.partial(jax.jit, static_argnames="spec")
def _probabilities(trainable: Params, frozen: Params, ids: jax.Array, mask: jax.Array, *, spec: StepSpec) -> jax.Array:
    params = assemble(frozen, trainable, spec.lora)
    outputs = probabilities(apply(params, ids, mask, config=spec.model_config, dtype=DTYPES[spec.dtype]), spec.model_config)
    return outputs[:, : spec.model_config.num_labels]


def predict(
    state: TrainState, frozen: Params, sequences: Sequence[Sequence[int]], grid: ShapeGrid, spec: StepSpec
) -> np.ndarray:
    """Class probabilities of the state's model, batched on ``grid`` like the predictor's.

    Args:
      state: whose trainable parameters (with ``frozen``) make the model.
      frozen: the parameters that do not train.
      sequences: token id sequences, each at most the grid's longest bucket.
      grid: the shapes batches are padded to.
      spec: the model and compute dtype.

    Returns:
      float32 ``[len(sequences), num_labels]``, in input order.
    """
    forward = functools.partial(_probabilities, state.trainable, frozen, spec=spec)
    return predict_in_batches(forward, sequences, grid, spec.model_config.pad_token_id, spec.model_config.num_labels)
