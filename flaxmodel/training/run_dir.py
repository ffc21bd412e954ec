"""A run directory: the settings it was started with, its orbax checkpoints and its metrics log.

Layout under ``--output``: ``train_config.json`` (the :class:`TrainConfig`, so a
restart with other settings is refused rather than mixed into the run),
``checkpoints/`` (orbax: the whole :class:`~flaxmodel.training.state.TrainState`,
the two latest steps kept), ``metrics.jsonl`` (one JSON record per line, each
with its ``step``) and ``best/`` (the exported model, written by the loop).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import orbax.checkpoint as ocp

from flaxmodel.errors import ConfigError
from flaxmodel.training.config import TrainConfig
from flaxmodel.training.state import TrainState

log = logging.getLogger(__name__)

RUN_CONFIG = "train_config.json"
METRICS_LOG = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
BEST = "best"


def check_run_dir(run_dir: str, config: TrainConfig) -> None:
    """Refuses to resume a run directory that was started with other settings.

    Raises:
      ConfigError: naming the settings that differ.
    """
    path = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.exists(path):
        return
    wanted = config.to_json()
    with open(path) as f:
        # A setting added since the run started has its default there: the run did without it.
        stored = {**TrainConfig(output=config.output).to_json(), **json.load(f)}
    if stored != wanted:
        changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise ConfigError(
            f"{run_dir} holds a run with other settings ({', '.join(changed)} differ); "
            "rerun the original command to resume it, or choose another --output"
        )


def record_config(run_dir: str, config: TrainConfig) -> None:
    """Writes ``train_config.json``, creating the run directory."""
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, RUN_CONFIG), "w") as f:
        json.dump(config.to_json(), f, indent=2)


def checkpoint_manager(run_dir: str) -> ocp.CheckpointManager:
    """The orbax manager of ``checkpoints/``; the caller closes it."""
    # Synchronous saves: a checkpoint must be complete before training moves on
    # or an interrupt exits.
    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.join(run_dir, CHECKPOINTS), options=options)


def save_state(manager: ocp.CheckpointManager, state: TrainState) -> None:
    """Checkpoints ``state`` under its step, unless that step is saved already."""
    step = int(state.step)
    if manager.latest_step() != step:
        manager.save(step, args=ocp.args.StandardSave(state), force=True)
        manager.wait_until_finished()


def restore_state(manager: ocp.CheckpointManager, initial: TrainState, run_dir: str) -> TrainState:
    """The latest checkpointed state, or ``initial`` when there is none.

    ``initial`` gives the tree structure, dtypes and devices to restore into.
    Metrics logged after the restored step are dropped: those steps run again.
    """
    latest = manager.latest_step()
    if latest is None:
        return initial
    state = manager.restore(latest, args=ocp.args.StandardRestore(initial))
    truncate_log(run_dir, latest)
    log.info("resumed %s at step %d", run_dir, latest)
    return state


def truncate_log(run_dir: str, step: int) -> None:
    """Drops ``metrics.jsonl`` records of steps after ``step``."""
    path = os.path.join(run_dir, METRICS_LOG)
    if not os.path.exists(path):
        return
    with open(path) as f:
        kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    with open(path, "w") as f:
        f.writelines(kept)


def log_metrics(run_dir: str, record: dict[str, Any]) -> None:
    """Appends one record (it must carry its ``step``) to ``metrics.jsonl``."""
    with open(os.path.join(run_dir, METRICS_LOG), "a") as f:
        f.write(json.dumps(record) + "\n")
