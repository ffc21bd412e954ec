"""The training driver: :func:`train` runs one run, or resumes it, to its end or a given step.

Each step takes the next batch of the epoch's fixed order, pads it and feeds it
through the jitted :func:`~flaxmodel.training.state.train_step`, whose metrics
(loss, gradient norm, learning rate) go to the progress bar and, every
:data:`LOG_EVERY_STEPS` steps, to ``metrics.jsonl``; epoch ends
evaluate and export (:mod:`~flaxmodel.training.evaluation`), and the state is
checkpointed every ``save_every`` steps, at each epoch's end, at the end and on
Ctrl-C.  Data order depends only on the seed and the epoch and dropout keys on
the step, so the same command started again resumes where the run stopped and
ends with the parameters an uninterrupted run reaches.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from flaxmodel.core.model import Params
from flaxmodel.training.batches import Batch, epoch_batches, make_batch
from flaxmodel.training.config import TrainConfig
from flaxmodel.training.evaluation import end_epoch
from flaxmodel.training.prepare import Prepared, prepare
from flaxmodel.training.run_dir import BEST, checkpoint_manager, log_metrics, record_config, restore_state, save_state
from flaxmodel.training.state import TrainState, assemble, train_step

log = logging.getLogger(__name__)

LOG_EVERY_STEPS = 50


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Where a call to :func:`train` left the run.

    Attributes:
      step, total_steps: steps taken so far and in the whole run.
      best_folder: the exported ``best/`` model, None before the first epoch ends.
      best_macro_f1, best_epoch: the best validation macro F1 and its epoch (without
        validation data: no score, and the last exported epoch), None before any.
      trainable: the trainable parameters (``"params"``, plus ``"lora"`` adapters).
      params: the full parameter tree, adapters merged in.
      state: the whole final :class:`~flaxmodel.training.state.TrainState`.
    """

    step: int
    total_steps: int
    best_folder: str | None
    best_macro_f1: float | None
    best_epoch: int | None
    trainable: Params
    params: Params
    state: TrainState

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


def train(config: TrainConfig, *, stop_after_steps: int | None = None, progress: bool = True) -> TrainResult:
    """Runs (or resumes) the run ``config`` describes.

    Args:
      config: the run's settings; ``config.output`` is its directory.
      stop_after_steps: checkpoint and return once this global step is reached.
      progress: show a tqdm progress bar on stderr.

    Returns:
      The :class:`TrainResult`.

    Raises:
      ConfigError, DataError, CheckpointError: before the first step, for bad input.
    """
    run = prepare(config)
    record_config(run.run_dir, config)
    manager = checkpoint_manager(run.run_dir)
    try:
        state = restore_state(manager, run.initial, run.run_dir)
        stop = run.total_steps if stop_after_steps is None else min(stop_after_steps, run.total_steps)
        state = _run_steps(run, state, manager, stop, progress)
    finally:
        manager.close()
    best = os.path.join(run.run_dir, BEST)
    return TrainResult(
        step=int(state.step),
        total_steps=run.total_steps,
        best_folder=best if os.path.isdir(best) else None,
        best_macro_f1=float(state.best_macro_f1) if state.best_macro_f1 >= 0 else None,
        best_epoch=int(state.best_epoch) if state.best_epoch >= 0 else None,
        trainable=state.trainable,
        params=assemble(run.frozen, state.trainable, run.spec.lora),
        state=state,
    )


def _batch(run: Prepared, rows: np.ndarray) -> Batch:
    sequences = [run.train_ids[i] for i in rows]
    return make_batch(
        sequences,
        run.train_targets[rows],
        run.weights,
        rows=run.config.batch_size,
        grid=run.grid,
        pad_id=run.model_config.pad_token_id,
        soft=None if run.train_soft is None else run.train_soft[rows],
        groups=None if run.train_groups is None else (run.train_groups[0][rows], run.train_groups[1][rows]),
    )


def _run_steps(
    run: Prepared, state: TrainState, manager: ocp.CheckpointManager, stop: int, progress: bool
) -> TrainState:
    """Trains from ``state`` up to global step ``stop``, checkpointing on the way; returns the last state."""
    cfg = run.config
    # One epoch's order at a time: it holds an index per training row, and a resumed run rebuilds it anyway.
    batches_of = functools.lru_cache(maxsize=1)(
        lambda epoch: epoch_batches(run.lengths, cfg.batch_size, cfg.seed, epoch, rows=run.epoch_rows(epoch))
    )
    # Outside a terminal (CI logs), a refresh every second would flood the log.
    interval = 1.0 if sys.stderr.isatty() else 30.0
    bar = tqdm(
        total=run.total_steps,
        initial=int(state.step),
        desc="train",
        unit="step",
        disable=not progress,
        mininterval=interval,
    )
    started, losses, grad_norms = time.time(), [], []
    try:
        for step in range(int(state.step), stop):
            epoch, position = divmod(step, run.steps_per_epoch)
            state, metrics = train_step(state, _batch(run, batches_of(epoch)[position]), run.frozen, spec=run.spec)
            # One transfer for the step's metrics, as the loss alone cost before.
            metrics = {name: float(value) for name, value in jax.device_get(metrics).items()}
            losses.append(metrics["loss"])
            grad_norms.append(metrics["grad_norm"])
            recent = float(np.mean(losses[-LOG_EVERY_STEPS:]))
            bar.update(1)
            rate = f"{metrics['learning_rate']:.2e}"
            bar.set_postfix(epoch=epoch + 1, loss=f"{recent:.4f}", learning_rate=rate, refresh=False)
            done = step + 1
            if done % LOG_EVERY_STEPS == 0:
                record = {
                    "event": "train",
                    "epoch": epoch + 1,
                    "step": done,
                    "loss": recent,
                    "grad_norm": float(np.mean(grad_norms[-LOG_EVERY_STEPS:])),
                    "learning_rate": metrics["learning_rate"],
                    "elapsed_s": round(time.time() - started, 1),
                }
                log_metrics(run.run_dir, record)
            if done % run.steps_per_epoch == 0:
                state = end_epoch(run, state, epoch + 1, float(np.mean(losses[-run.steps_per_epoch :])))
                save_state(manager, state)
            elif done % cfg.save_every == 0:
                save_state(manager, state)
        save_state(manager, state)
    except KeyboardInterrupt:
        save_state(manager, state)
        log.warning("interrupted at step %d; run the same command again to resume", int(state.step))
        raise
    finally:
        bar.close()
    return state
