"""Training a model folder's target-group head on its frozen encoder, and choosing its thresholds.

``python -m flaxmodel.training.targets --model FOLDER --data_root ../shared/data [--output FOLDER]``

The classifier is trained first; this command then reads the first-token states
its encoder gives every text that carries target annotations
(:mod:`flaxmodel.training.target_data`), trains a small multi-label head on them
(masked binary cross-entropy: what a source does not annotate does not train),
and picks each category's threshold on the validation rows as the one with the
best F1.  The encoder is not touched, so the classes' scores stay bit for bit
what they were; the head reads the state the class head reads, and adds one
small dense layer pair per text.  It reports per-category precision, recall and
F1 on validation, and the two review-ready figures on DynaHate's dev split
(selection only; whole, and its rows with no near-duplicate in DynaHate's train
split, the fair judge of a model trained there) and HatemojiBuild's validation
split: the share of hateful
entries with an annotated target whose ``targets`` name one of its categories,
and the share of non-hateful entries that get any target.  The head goes into
the folder as ``target_head.json`` and ``target_head.safetensors``
(:mod:`flaxmodel.ckpts.target_head`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import shutil
import sys
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from flaxmodel.ckpts.loader import load_checkpoint
from flaxmodel.ckpts.target_head import write_target_head
from flaxmodel.commands import run_command
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.model import TargetHead, hidden_states
from flaxmodel.errors import ConfigError
from flaxmodel.flags import add_flags, flag, from_namespace
from flaxmodel.inference.metrics import threshold_for_f1
from flaxmodel.inference.planner import grid_for, predict_in_batches
from flaxmodel.inference.reference import ModelRef, resolve_model
from flaxmodel.training.mixture import DEFAULT_MIXTURE, load_mixture
from flaxmodel.training.state import masked_bce
from flaxmodel.training.target_data import CATEGORIES, TargetSet, read_dynahate_dev, read_target_sets, unseen_in_training

PROG = "flaxmodel.training.targets"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TargetHeadSettings:
    """The target-head command's flags."""

    model: str = flag(help="Model folder whose encoder the head reads.")
    data_root: str = flag(help="Folder the mixture's paths are relative to (../shared/data).")
    output: str | None = flag(None, "Folder to write the model with its head into (a copy); default: --model itself.")
    mixture: str | None = flag(None, "Mixture file giving each source's split; default: the default model's.")
    hidden_size: int = flag(256, "Units of the head's hidden layer.")
    steps: int = flag(3000, "Optimiser steps.")
    batch_rows: int = flag(512, "Rows per step.")
    learning_rate: float = flag(2e-3, "Peak learning rate (AdamW, cosine decay).")
    weight_decay: float = flag(1e-2, "AdamW weight decay.")
    max_length: int = flag(128, "Tokens per text, as the pipeline's windows.")
    seed: int = flag(0, "Initialisation and batch order.")


class HeadState(train_state.TrainState):
    """The head's parameters and optimiser state, one pytree through :func:`train_step`."""


@jax.jit
def train_step(state: HeadState, batch: dict[str, jax.Array]) -> tuple[HeadState, dict[str, jax.Array]]:
    """One AdamW step on a batch of ``features [rows, hidden]``, ``labels`` and ``known`` ``[rows, categories]``."""

    def loss_fn(params):
        return masked_bce(state.apply_fn({"params": params}, batch["features"][:, None]), batch["labels"], batch["known"])

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), {"loss": loss}


def _features(
    ref: ModelRef, settings: TargetHeadSettings, sets: Sequence[TargetSet]
) -> tuple[EncoderConfig, list[np.ndarray]]:
    """The encoder's config (with the head's categories) and each set's first-token states ``[n, hidden]``."""
    checkpoint = load_checkpoint(ref.path, target_head=False)
    config = checkpoint.config.with_targets(CATEGORIES, settings.hidden_size)
    grid = grid_for(config, ref.max_length, jax.devices()[0].platform)
    forward = jax.jit(functools.partial(hidden_states, config=config, first_token_only=True))
    params = jax.device_put(checkpoint.params)
    tokenizer = ref.tokenizer()
    out = []
    for s in sets:
        started = time.perf_counter()
        out.append(
            predict_in_batches(
                functools.partial(forward, params), tokenizer.encode(s.texts), grid, config.pad_token_id, config.hidden_size
            )
        )
        log.info("%s: %d texts encoded in %.0f s", s.name, len(s), time.perf_counter() - started)
    return config, out


def train_head(
    config: EncoderConfig, features: np.ndarray, labels: np.ndarray, known: np.ndarray, settings: TargetHeadSettings
) -> dict:
    """The head's parameters after ``settings.steps`` steps on rows drawn uniformly with replacement.

    Args:
      config: the encoder's config with the head's categories and width.
      features: float32 first-token states ``[n, hidden]``.
      labels, known: float32 and bool ``[n, categories]`` (masked where not ``known``).
      settings: steps, batch rows, learning rate, weight decay, seed.

    Returns:
      The head's parameter tree.
    """
    head = TargetHead(config)
    rng = np.random.default_rng(settings.seed)
    params = head.init(jax.random.PRNGKey(settings.seed), jnp.zeros((1, 1, config.hidden_size)))["params"]
    schedule = optax.warmup_cosine_decay_schedule(0.0, settings.learning_rate, settings.steps // 20, settings.steps)
    tx = optax.adamw(schedule, weight_decay=settings.weight_decay)
    state = HeadState.create(apply_fn=head.apply, params=params, tx=tx)
    for step in range(settings.steps):
        rows = rng.integers(0, len(features), settings.batch_rows)
        state, metrics = train_step(state, {"features": features[rows], "labels": labels[rows], "known": known[rows]})
        if step % 500 == 0 or step == settings.steps - 1:
            log.info("step %d: loss %.4f", step, float(metrics["loss"]))
    return jax.device_get(state.params)


def head_scores(config: EncoderConfig, params: dict, features: np.ndarray) -> np.ndarray:
    """Target scores ``[n, categories]`` of first-token states ``[n, hidden]``."""
    return np.asarray(jax.nn.sigmoid(TargetHead(config).apply({"params": params}, jnp.asarray(features)[:, None])))


def best_f1_thresholds(scores: np.ndarray, labels: np.ndarray, known: np.ndarray) -> dict[str, dict[str, float]]:
    """Per category, the threshold with the best F1 on its known rows, with that precision, recall and F1."""
    chosen = {}
    for j, category in enumerate(CATEGORIES):
        rows = known[:, j]
        chosen[category] = {**threshold_for_f1(labels[rows, j] > 0.5, scores[rows, j]), "rows": int(rows.sum())}
        if chosen[category]["threshold"] is None:
            raise ConfigError(f"no validation row attacks {category!r}: its threshold cannot be chosen")
    return chosen


def review_figures(scores: np.ndarray, data: TargetSet, thresholds: dict[str, float]) -> dict[str, float | int]:
    """The issue's two figures on one set: hit rate on hateful targeted entries, any-target rate on non-hateful ones."""
    named = scores >= np.asarray([thresholds[c] for c in CATEGORIES])
    targeted = data.hateful & data.known.all(axis=1) & (data.labels.sum(axis=1) > 0)
    hit = (named & (data.labels > 0.5)).any(axis=1)
    clean = ~data.hateful
    return {
        "hateful_targeted": int(targeted.sum()),
        "true_category_named": float(hit[targeted].mean()) if targeted.any() else float("nan"),
        "not_hateful": int(clean.sum()),
        "any_target_named": float(named[clean].any(axis=1).mean()) if clean.any() else float("nan"),
    }


def _stack(sets: Sequence[TargetSet], features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.concatenate(features), np.concatenate([s.labels for s in sets]), np.concatenate([s.known for s in sets])


def _check(settings: TargetHeadSettings) -> None:
    if settings.hidden_size < 1 or settings.steps < 1 or settings.batch_rows < 1:
        raise ConfigError("--hidden_size, --steps and --batch_rows must be positive")
    if not settings.learning_rate > 0:
        raise ConfigError(f"--learning_rate must be positive, got {settings.learning_rate}")
    if settings.max_length < 3:
        raise ConfigError(f"--max_length must leave room for special tokens and text, got {settings.max_length}")
    if not os.path.isdir(os.path.join(settings.data_root, "hatexplain")):
        raise ConfigError(f"--data_root {settings.data_root}: no hatexplain/ there; give the labeled data folder")


def _shown(path: str) -> str:
    """A mixture's path as the model folder records it: relative to the repository for the bundled ones, so
    a shipped file names no machine's folders."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    inside = os.path.relpath(os.path.abspath(path), repo)
    return path if inside.startswith("..") else inside


def _train(settings: TargetHeadSettings) -> dict[str, Any]:
    _check(settings)
    ref = resolve_model(settings.model, max_length=settings.max_length)  # a bad folder fails here, before any data is read
    started = time.perf_counter()
    mixture_path = settings.mixture or DEFAULT_MIXTURE
    train_sets, val_sets = read_target_sets(load_mixture(mixture_path), settings.data_root)
    dev = read_dynahate_dev(settings.data_root)
    config, features = _features(ref, settings, [*train_sets, *val_sets, dev])
    train_features, val_features, dev_features = features[: len(train_sets)], features[len(train_sets) : -1], features[-1]
    params = train_head(config, *_stack(train_sets, train_features), settings)
    val_x, val_y, val_known = _stack(val_sets, val_features)
    per_category = best_f1_thresholds(head_scores(config, params, val_x), val_y, val_known)
    thresholds = {c: per_category[c]["threshold"] for c in CATEGORIES}
    hatemoji = [v.name for v in val_sets].index("hatemoji_build")
    unseen = unseen_in_training(dev, settings.data_root)
    judges = {
        "dynahate_dev": (dev, dev_features),
        "dynahate_dev_unseen": (dev.subset(unseen, "dynahate_dev_unseen"), dev_features[unseen]),
        "hatemoji_build_validation": (val_sets[hatemoji], val_features[hatemoji]),
    }
    figures = {name: review_figures(head_scores(config, params, x), data, thresholds) for name, (data, x) in judges.items()}
    how = {
        "input": "first-token state of the model's last layer (frozen)",
        "trained_on": {s.name: len(s) for s in train_sets},
        "chosen_on": f"validation splits of {', '.join(s.name for s in val_sets)} ({_shown(mixture_path)}), pooled; best F1",
        "per_category": per_category,
        "review_figures": figures,
        "settings": dataclasses.asdict(settings),
        "wall_seconds": round(time.perf_counter() - started),
    }
    output = settings.output or settings.model
    if os.path.abspath(output) != os.path.abspath(settings.model):
        shutil.copytree(settings.model, output, dirs_exist_ok=True)
    write_target_head(output, CATEGORIES, params, thresholds, how)
    return how


def main(argv: Sequence[str] | None = None) -> int:
    """Parses ``argv`` (default: ``sys.argv[1:]``), trains the head, writes it and prints what it measured.

    Args:
      argv: the command line's arguments.

    Returns:
      The exit status: 0, or 2 after ``PROG: error: MESSAGE`` on stderr for a flag, model folder or data
      folder that cannot work (checked before the data is read).
    """
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_flags(parser, TargetHeadSettings)
    settings = from_namespace(TargetHeadSettings, parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return run_command(PROG, lambda: print(json.dumps(_train(settings), indent=2)))


if __name__ == "__main__":
    sys.exit(main())
