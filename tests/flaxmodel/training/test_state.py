"""The training state is one pytree that the pure jitted step advances; the flags are the config's fields."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxmodel.flags import from_namespace
from flaxmodel.training import TrainConfig, TrainState, build_parser, train_step
from flaxmodel.training.batches import epoch_batches, make_batch
from flaxmodel.training.prepare import prepare
from flaxmodel.training.state import masked_bce


def _first_batch(make_config):
    # The LoRA run of the training tests, so the compiled step is shared.
    run = prepare(make_config(lora_rank=4, train_norms=True))
    rows = epoch_batches(run.lengths, run.config.batch_size, run.config.seed, 0)[0]
    batch = make_batch(
        [run.train_ids[i] for i in rows],
        run.train_targets[rows],
        run.weights,
        rows=run.config.batch_size,
        grid=run.grid,
        pad_id=run.model_config.pad_token_id,
    )
    return run, batch


def test_the_state_is_a_pytree_the_jitted_step_advances(make_config):
    run, batch = _first_batch(make_config)
    state = run.initial
    assert isinstance(state, TrainState)
    assert set(state.trainable) == {"params", "lora"} and "encoder" in run.frozen
    leaves, treedef = jax.tree_util.tree_flatten(state)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)

    compiled = train_step._cache_size()
    once, metrics = train_step(state, batch, run.frozen, spec=run.spec)
    twice, later = train_step(once, batch, run.frozen, spec=run.spec)
    # The state comes out of the step placed as it went in: one program serves every step.
    assert train_step._cache_size() - compiled <= 1
    assert (int(state.step), int(once.step), int(twice.step)) == (0, 1, 2)
    assert jax.tree_util.tree_structure(twice) == treedef
    # The metrics are a pytree of scalars: the loss, the unclipped gradient norm and the rate applied.
    assert set(metrics) == {"loss", "grad_norm", "learning_rate"}
    assert all(np.shape(value) == () for value in jax.tree_util.tree_leaves(metrics))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
    # Warm-up starts at 0; 16 steps with 10% warm-up reach the peak at step 1.
    assert float(metrics["learning_rate"]) == 0.0
    assert float(later["learning_rate"]) == pytest.approx(run.config.learning_rate)
    # Pure: the same state and batch give the same step, and the input state is untouched.
    again, metrics_again = train_step(state, batch, run.frozen, spec=run.spec)
    assert jax.device_get(metrics_again) == jax.device_get(metrics) and int(state.step) == 0
    for x, y in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(once)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # The zero-initialised B factors move once warm-up (its first step has learning rate 0) is over;
    # the best score only passes through.
    lora_b = twice.trainable["lora"]["encoder"]["layer_0"]["attention"]["query"]["lora_b"]
    assert np.abs(np.asarray(lora_b)).max() > 0
    assert (float(twice.best_macro_f1), int(twice.best_epoch)) == (-1.0, -1)


def test_help_lists_every_setting():
    text = build_parser().format_help()
    for field in dataclasses.fields(TrainConfig):
        assert f"--{field.name}" in text, field.name
    assert "--stop_after_steps" in text


def test_the_parser_builds_the_config_it_declares():
    args = build_parser().parse_args(
        ["--train", "t.csv", "--output", "run", "--labels", "a, b", "--lora_rank", "8", "--train_norms"]
        + ["--lora_targets", "query,value", "--learning_rate", "1e-3"]
    )
    config = from_namespace(TrainConfig, args)
    assert config == TrainConfig(
        train="t.csv",
        output="run",
        labels=("a", "b"),
        lora_rank=8,
        train_norms=True,
        lora_targets=("query", "value"),
        learning_rate=1e-3,
    )
    defaults = from_namespace(TrainConfig, build_parser().parse_args(["--train", "t.csv", "--output", "run"]))
    assert defaults == TrainConfig(train="t.csv", output="run")


def test_the_batch_loss_is_the_weighted_mean_of_its_rows(make_config):
    run, batch = _first_batch(make_config)

    def loss(*weights: float) -> float:
        w = np.zeros(run.config.batch_size, np.float32)
        w[: len(weights)] = weights
        # The same state, shapes and step: the same dropout, so each row's loss is the same in every call.
        return float(train_step(run.initial, batch.replace(weights=w), run.frozen, spec=run.spec)[1]["loss"])

    first, second = loss(1.0), loss(0.0, 1.0)
    assert first != pytest.approx(second)
    # sum(w l) / sum(w): rows of weight 0 count for nothing (a plain mean over the batch would divide by its rows).
    assert loss(3.0, 1.0) == pytest.approx((3 * first + second) / 4, rel=1e-5)
    assert loss(0.5, 0.5) == pytest.approx((first + second) / 2, rel=1e-5)


# Target groups of two rows: a cell a source does not annotate holds an arbitrary label and a confident wrong
# logit, which must neither count in the mean nor train.
GROUP_LOGITS = jnp.array([[2.0, -1.0, -6.0], [5.0, 4.0, 0.0]])
GROUP_LABELS = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
GROUP_KNOWN = jnp.array([[True, True, False], [False, True, True]])


def _bce(logit: float, label: float) -> float:
    """-[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], written out."""
    return math.log1p(math.exp(-logit)) if label else math.log1p(math.exp(logit))


def test_masked_bce_is_the_mean_over_the_annotated_cells_only():
    expected = np.mean([_bce(2.0, 1), _bce(-1.0, 0), _bce(4.0, 1), _bce(0.0, 1)])
    assert float(masked_bce(GROUP_LOGITS, GROUP_LABELS, GROUP_KNOWN)) == pytest.approx(expected, rel=1e-6)
    # The plain mean over all six cells would be far larger (the masked cells cost 6.0 and 5.0).
    assert expected < 0.8 * np.mean([_bce(x, y) for x, y in zip(np.ravel(GROUP_LOGITS), np.ravel(GROUP_LABELS))])
    # Whatever the masked cells hold, the loss is the same.
    flipped = jnp.where(GROUP_KNOWN, GROUP_LABELS, 1.0 - GROUP_LABELS)
    negated = jnp.where(GROUP_KNOWN, GROUP_LOGITS, -GROUP_LOGITS)
    assert float(masked_bce(negated, flipped, GROUP_KNOWN)) == pytest.approx(expected, rel=1e-6)


def test_masked_cells_do_not_train_and_no_annotation_gives_no_loss():
    grads = np.asarray(jax.grad(masked_bce)(GROUP_LOGITS, GROUP_LABELS, GROUP_KNOWN))
    known = np.asarray(GROUP_KNOWN)
    assert (grads[~known] == 0).all() and (grads[known] != 0).all()
    # d/dx of the mean over 4 cells: (sigmoid(x) - y) / 4.
    sigmoid = 1 / (1 + np.exp(-np.asarray(GROUP_LOGITS)))
    np.testing.assert_allclose(grads[known], ((sigmoid - np.asarray(GROUP_LABELS)) / 4)[known], rtol=1e-5)
    none = jnp.zeros_like(GROUP_KNOWN)
    assert float(masked_bce(GROUP_LOGITS, GROUP_LABELS, none)) == 0.0
    assert not np.asarray(jax.grad(masked_bce)(GROUP_LOGITS, GROUP_LABELS, none)).any()
