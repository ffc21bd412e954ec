"""One adapting run's fixed inputs and its training units, on a fixed grid of batch shapes.

:class:`Cache` holds what never changes within a run: each text's token ids,
what enters the first adapted layer (computed once by the starting model's
frozen layers), and the starting model's probabilities and target scores.  :func:`train_unit`
trains fresh adapters on some of the rows for some epochs and scores the
held-out rows after each epoch.  Every batch has ``batch_size`` rows and a
length from :data:`LENGTH_BUCKETS`, so the step compiles once per bucket for the
whole run (:func:`warm_up` does that before the progress bar starts, so its ETA
is the steps' own).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flaxmodel.core.model import Params
from flaxmodel.errors import ConfigError
from flaxmodel.inference.padding import pad_batch
from flaxmodel.training.adapt_step import (
    AdaptBatch,
    AdaptSpec,
    adapt_probabilities,
    adapt_step,
    initial_adapt_state,
    lower_states,
    upper_probabilities,
)
from flaxmodel.training.batches import epoch_batches
from flaxmodel.training.state import split_trainable

LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)
WARMUP_SHARE = 0.06


def buckets_for(max_length: int) -> tuple[int, ...]:
    """The batch lengths of a run whose texts have at most ``max_length`` tokens."""
    return tuple(sorted({min(b, max_length) for b in LENGTH_BUCKETS}))


def bucket_of(length: int, buckets: Sequence[int]) -> int:
    return next(b for b in buckets if b >= length)


@dataclasses.dataclass(frozen=True)
class Cache:
    """Per text (labeled rows first, then unlabeled ones): ids, lower hidden states, starting probabilities.

    Attributes:
      ids: token ids of each text.
      hidden: float32 ``[tokens_i, hidden]`` per text: what enters layer ``start``.
      teacher: float32 ``[texts, num_outputs]`` the starting model's class probabilities, then its target
        scores if it has a target head (None with a new head).
      buckets: the run's batch lengths.
      pad_id: the padding token's id.
    """

    ids: list[list[int]]
    hidden: list[np.ndarray]
    teacher: np.ndarray | None
    buckets: tuple[int, ...]
    pad_id: int

    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.ids])

    def batch(self, rows: np.ndarray, batch_rows: int, targets: "Targets") -> AdaptBatch:
        """The padded batch of texts ``rows`` (at most ``batch_rows``), with each row's targets and weight
        (``targets`` holds the batch's rows only)."""
        length = bucket_of(max(len(self.ids[i]) for i in rows), self.buckets)
        ids, mask = pad_batch([self.ids[i] for i in rows], batch_rows, length, self.pad_id)
        hidden = np.zeros((batch_rows, length, self.hidden[rows[0]].shape[-1]), np.float32)
        for j, i in enumerate(rows):
            hidden[j, : len(self.hidden[i])] = self.hidden[i]
        # Targets' fields are AdaptBatch's after the inputs, in the same order.
        return AdaptBatch(hidden, ids, mask, *(_rows(getattr(targets, f.name), batch_rows) for f in dataclasses.fields(targets)))


def _rows(values: np.ndarray, rows: int) -> np.ndarray:
    """float32 ``values`` padded with zero rows to ``rows`` rows (padding rows allow nothing and weigh 0)."""
    values = np.asarray(values, np.float32)
    return np.pad(values, [(0, rows - len(values))] + [(0, 0)] * (values.ndim - 1))


def build_cache(
    params: Params, ids: list[list[int]], config, start: int, batch_rows: int, max_length: int, teacher: bool
) -> Cache:
    """Runs the starting model's frozen layers once over every text (and its top layers, for the teacher)."""
    buckets = buckets_for(max_length)
    cache = Cache(ids, [np.empty(0)] * len(ids), None, buckets, config.pad_token_id)
    probabilities = np.zeros((len(ids), config.num_outputs), np.float32)
    order = np.argsort([len(s) for s in ids], kind="stable")
    for begin in range(0, len(order), batch_rows):
        rows = order[begin : begin + batch_rows]
        length = bucket_of(max(len(ids[i]) for i in rows), buckets)
        batch_ids, mask = pad_batch([ids[i] for i in rows], batch_rows, length, config.pad_token_id)
        hidden = lower_states(params, batch_ids, mask, config=config, stop=start)
        if teacher:
            p = upper_probabilities(params, hidden, batch_ids, mask, config=config, start=start)
            probabilities[rows] = np.asarray(p)[: len(rows)]
        hidden = np.asarray(hidden)
        for j, i in enumerate(rows):
            cache.hidden[i] = hidden[j, : len(ids[i])]
    return dataclasses.replace(cache, teacher=probabilities if teacher else None)


@dataclasses.dataclass(frozen=True)
class Targets:
    """What each text of the cache trains towards: allowed classes ``[texts, C]``, soft targets, weights
    ``[texts]``, and the target scores ``[texts, T]`` (T = 0 without a target head), 1 in ``said_targets``
    where they are the row's own groups (see :class:`~flaxmodel.training.adapt_step.AdaptBatch`)."""

    allowed: np.ndarray
    soft: np.ndarray
    weights: np.ndarray
    soft_targets: np.ndarray
    said_targets: np.ndarray

    def __getitem__(self, rows: np.ndarray) -> "Targets":
        return Targets(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))

    @classmethod
    def neutral(cls, rows: int, classes: int, targets: int) -> "Targets":
        """Targets for scoring only: every class allowed, uniform, weight 1."""
        uniform = np.full((rows, classes), 1 / classes, np.float32)
        half, no = np.full((rows, targets), 0.5, np.float32), np.zeros((rows, targets), np.float32)
        return cls(np.ones((rows, classes), np.float32), uniform, np.ones(rows, np.float32), half, no)


def split_upper(upper: Params, spec: AdaptSpec, key: jax.Array) -> tuple[Params, Params]:
    """``(trainable, frozen)`` of the top layers: adapters and the class head train; a target head stays frozen
    unless ``spec.refit_targets``, as the folder keeps the starting model's (its scores held by the loss)."""
    trainable, frozen = split_trainable(upper, spec.model_config, spec.lora, False, key)
    if "target_head" in trainable["params"] and not spec.refit_targets:
        params = dict(trainable["params"])
        frozen = {**frozen, "target_head": params.pop("target_head")}
        trainable = {**trainable, "params": params}
    return trainable, frozen


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first :data:`WARMUP_SHARE` of the steps, then linear decay to zero."""
    warmup = max(1, int(WARMUP_SHARE * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


@dataclasses.dataclass(frozen=True)
class Unit:
    """One training run of the selection, the learning curve or the final model.

    Attributes:
      rows: the texts it trains on (labeled, then the unlabeled ones each epoch draws from ``unlabeled``).
      held: the labeled rows scored after each epoch (may be empty).
      rate: peak learning rate.
      epochs: passes over ``rows``.
      seed: of the adapters, dropout and data order.
    """

    rows: np.ndarray
    held: np.ndarray
    rate: float
    epochs: int
    seed: int


def epoch_plan(unit: Unit, unlabeled: np.ndarray, lengths: np.ndarray, batch_rows: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch: the unit's rows plus a fresh draw of unlabeled texts, a quarter as many (each
    unlabeled text costs a step's share of time and only holds scores in place)."""
    rows = unit.rows
    if len(unlabeled):
        draw = np.random.default_rng([unit.seed, epoch, 3]).permutation(unlabeled)[: max(1, len(rows) // 4)]
        rows = np.concatenate([rows, draw])
    return epoch_batches(lengths, batch_rows, unit.seed, epoch, rows=rows)


def unit_steps(unit: Unit, unlabeled: np.ndarray, lengths: np.ndarray, batch_rows: int) -> int:
    return sum(len(epoch_plan(unit, unlabeled, lengths, batch_rows, e)) for e in range(unit.epochs))


def train_unit(
    unit: Unit,
    *,
    cache: Cache,
    targets: Targets,
    unlabeled: np.ndarray,
    upper: Params,
    spec: AdaptSpec,
    batch_rows: int,
    on_step: Callable[[], None] = lambda: None,
) -> tuple[list[np.ndarray], list[Params]]:
    """Trains fresh adapters (and the head) on ``unit.rows``.

    Returns:
      Per epoch: the held-out rows' class probabilities float32 ``[len(unit.held), C]``, and the trained
      parameters (``{"params": head, "lora": adapters}``, as numpy).
    """
    key = jax.random.PRNGKey(unit.seed)
    trainable, frozen = split_upper(upper, spec, jax.random.fold_in(key, 1))
    frozen = jax.tree_util.tree_map(jnp.asarray, frozen)
    state = initial_adapt_state(trainable, jax.random.fold_in(key, 2), spec)
    lengths = cache.lengths()
    plans = [epoch_plan(unit, unlabeled, lengths, batch_rows, e) for e in range(unit.epochs)]
    total = sum(len(p) for p in plans)
    held_probabilities, snapshots = [], []
    for plan in plans:
        for batch_rows_idx in plan:
            batch = cache.batch(batch_rows_idx, batch_rows, targets[batch_rows_idx])
            rate = jnp.asarray(learning_rate(int(state.step), total, unit.rate), jnp.float32)
            state, loss = adapt_step(state, batch, frozen, rate, spec=spec)
            on_step()
        # Once an epoch (a sync costs a step's wait): a diverged run must stop, not export a model of NaNs.
        if not np.isfinite(float(loss)):
            raise ConfigError(f"the loss is not finite after {int(state.step)} steps at learning rate {unit.rate:g}; lower --learning_rates")
        held_probabilities.append(predict_rows(state.trainable, frozen, cache, unit.held, spec, batch_rows))
        snapshots.append(jax.tree_util.tree_map(np.asarray, state.trainable))
    return held_probabilities, snapshots


def predict_rows(
    trainable: Params, frozen: Params, cache: Cache, rows: np.ndarray, spec: AdaptSpec, batch_rows: int, targets: bool = False
) -> np.ndarray:
    """float32 ``[len(rows), C]`` class probabilities of the adapted model on texts ``rows`` (``targets``: its
    target scores ``[len(rows), T]`` instead)."""
    config = spec.model_config
    columns = slice(config.num_labels, None) if targets else slice(0, config.num_labels)
    out = np.zeros((len(rows), len(config.targets) if targets else config.num_labels), np.float32)
    order = np.argsort(cache.lengths()[rows], kind="stable")
    for begin in range(0, len(order), batch_rows):
        part = order[begin : begin + batch_rows]
        batch = cache.batch(rows[part], batch_rows, Targets.neutral(len(part), config.num_labels, len(config.targets)))
        out[part] = np.asarray(adapt_probabilities(trainable, frozen, batch, spec=spec))[: len(part), columns]
    return out


def predict_final(trained: Params, upper: Params, cache: Cache, rows: np.ndarray, spec: AdaptSpec, batch_rows: int) -> np.ndarray:
    """float32 ``[len(rows), T]`` the target scores of a unit's trained parameters on texts ``rows``."""
    frozen = jax.tree_util.tree_map(jnp.asarray, split_upper(upper, spec, jax.random.PRNGKey(0))[1])
    return predict_rows(trained, frozen, cache, rows, spec, batch_rows, targets=True)


def warm_up(params: Params, upper: Params, spec: AdaptSpec, batch_rows: int, lengths: set[int], teacher: bool) -> None:
    """Compiles every program the run calls, two at a time, before the first timed step.

    Per bucket length: the frozen layers' pass, the starting model's top layers (with ``teacher``), the
    step and the prediction.  Compiling is single-threaded, so two at once halve its wall time on two cores.
    """
    config, start = spec.model_config, spec.start
    trainable, frozen = split_upper(upper, spec, jax.random.PRNGKey(0))
    frozen = jax.tree_util.tree_map(jnp.asarray, frozen)
    state = initial_adapt_state(trainable, jax.random.PRNGKey(1), spec)
    classes = config.num_labels
    programs: list[Callable[[], Any]] = []
    for length in sorted(lengths):
        ids, mask = np.zeros((batch_rows, length), np.int32), np.ones((batch_rows, length), np.int32)
        hidden = np.zeros((batch_rows, length, config.hidden_size), np.float32)
        neutral = Targets.neutral(batch_rows, classes, len(config.targets))
        batch = AdaptBatch(hidden, ids, mask, *(getattr(neutral, f.name) for f in dataclasses.fields(neutral)))
        programs.append(functools.partial(lower_states, params, ids, mask, config=config, stop=start))
        if teacher:
            programs.append(functools.partial(upper_probabilities, params, hidden, ids, mask, config=config, start=start))
        programs.append(functools.partial(adapt_step, state, batch, frozen, jnp.asarray(0.0, jnp.float32), spec=spec))
        programs.append(functools.partial(adapt_probabilities, state.trainable, frozen, batch, spec=spec))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for done in pool.map(lambda program: jax.block_until_ready(program()), programs):
            del done
