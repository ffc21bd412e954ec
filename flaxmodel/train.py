"""Fine-tuning a classifier on labeled text: ``python -m flaxmodel.train`` (``flaxmodel-train``).

Starts from any checkpoint folder ``load_checkpoint`` reads (default: the MiniLM
encoder with a fresh head) and trains either every parameter or LoRA adapters
(:mod:`flaxmodel.lora`) plus the head and, optionally, the layer norms, with
AdamW under linear warm-up and decay, dropout, gradient clipping and optional
class weights.  Batches group texts of similar length and pad them to the
predictor's length buckets, so the train step compiles once per bucket.

Everything a run writes lives in its ``--output`` directory: ``train_config.json``,
``checkpoints/`` (orbax: trainable parameters, optimizer state, step and the
best score so far, every ``--save_every`` steps and at each epoch's end),
``metrics.jsonl`` (training loss and the validation scores of every epoch) and
``best/``, the exported model with the best validation macro F1.  Data order
depends only on the seed and the epoch, and dropout keys on the step, so a run
started again with the same command resumes where it stopped and ends with the
same parameters as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import sys
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from flaxmodel.architecture import NORM
from flaxmodel import files
from flaxmodel.checkpoint import CheckpointError, load_checkpoint
from flaxmodel.config import ConfigError, EncoderConfig
from flaxmodel.data import FORMATS, DataError, LabeledData, read_labeled
from flaxmodel.default_model import MINILM_PACKAGE, minilm_path
from flaxmodel.export import export_model
from flaxmodel.lora import DENSE_MODULES, LoraConfig, base_reference, init_adapters, is_adapter_folder, merge
from flaxmodel.metrics import evaluate
from flaxmodel.model import ARCHITECTURES, Params, SequenceClassifier, apply, probabilities
from flaxmodel.predictor import DTYPES, length_buckets
from flaxmodel.tokenizer import TextEncoder

log = logging.getLogger(__name__)

RUN_CONFIG = "train_config.json"
METRICS_LOG = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
BEST = "best"
CLASS_WEIGHTING = ("balanced", "sqrt")
# Batches are formed inside shuffled pools of this many batches: each pool is
# sorted by length, so batches pad little yet the data order stays random.
POOL_BATCHES = 50
# Parameter leaves that weight decay applies to; biases and norm scales are exempt.
DECAYED_LEAVES = ("kernel", "embedding", "lora_a", "lora_b")
LOG_EVERY_STEPS = 50


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run; written to the run directory so a restart can check it is the same run."""

    train: str
    output: str
    val: str | None = None
    model: str | None = None
    labels: tuple[str, ...] | None = None
    text_field: str = "text"
    label_field: str = "label"
    format: str = "auto"
    epochs: int = 3
    batch_size: int = 32
    max_length: int = 64
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    class_weights: str = ""
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = DENSE_MODULES
    train_norms: bool = False
    dtype: str = "float32"
    seed: int = 0
    save_every: int = 200
    eval_batch_size: int = 64

    def validate(self) -> None:
        """Fails fast, before any data is read, on settings that cannot work."""
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "save_every": self.save_every,
            "eval_batch_size": self.eval_batch_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{name} must be at least 1, got {value}")
        if self.max_length < 3:
            raise ConfigError(f"--max_length must leave room for special tokens and text, got {self.max_length}")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.clip_norm <= 0:
            raise ConfigError("--weight_decay must be >= 0 and --clip_norm > 0")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.format not in FORMATS:
            raise ConfigError(f"--format must be one of {FORMATS}, got {self.format!r}")
        if self.lora_rank < 0:
            raise ConfigError(f"--lora_rank must be 0 (full fine-tuning) or positive, got {self.lora_rank}")
        if self.train_norms and not self.lora_rank:
            raise ConfigError("--train_norms only applies to LoRA (--lora_rank > 0): full fine-tuning trains them anyway")
        if self.model is not None and not files.is_remote(self.model) and not os.path.isdir(self.model):
            raise ConfigError(f"--model {self.model}: no such checkpoint folder")
        if self.class_weights and self.class_weights not in CLASS_WEIGHTING:
            _explicit_weights(self.class_weights)

    @property
    def lora(self) -> LoraConfig | None:
        if not self.lora_rank:
            return None
        return LoraConfig(rank=self.lora_rank, alpha=self.lora_alpha, targets=tuple(self.lora_targets))

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class TrainResult:
    step: int
    total_steps: int
    best_folder: str | None
    best_macro_f1: float | None
    best_epoch: int | None
    trainable: Params
    params: Params

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


def _explicit_weights(spec: str) -> dict[str, float]:
    weights = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip() or weights.get(name.strip(), 0) <= 0:
            raise ConfigError(
                f"--class_weights {spec!r}: use 'balanced', 'sqrt' or positive name=weight pairs, e.g. hate=4,offensive=1"
            )
    return weights


def class_weights(spec: str, data: LabeledData) -> np.ndarray:
    """Per-class loss weights: uniform, inverse frequency ('balanced'), its square root, or explicit."""
    counts = np.bincount(data.label_ids, minlength=len(data.labels)).astype(np.float64)
    if not spec:
        return np.ones(len(data.labels), np.float32)
    if spec in CLASS_WEIGHTING:
        # Classes absent from the data never weigh in a loss term; keep them at 1.
        balanced = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 1.0)
        return (balanced if spec == "balanced" else np.sqrt(balanced)).astype(np.float32)
    explicit = _explicit_weights(spec)
    unknown = sorted(set(explicit) - set(data.labels))
    if unknown:
        raise ConfigError(f"--class_weights names unknown labels {unknown}; labels are {list(data.labels)}")
    return np.array([explicit.get(name, 1.0) for name in data.labels], np.float32)


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Row indices of each batch of an epoch: a function of (seed, epoch) only."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    batches = []
    pool = batch_size * POOL_BATCHES
    for start in range(0, len(order), pool):
        part = order[start : start + pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_batch(
    sequences: Sequence[Sequence[int]], buckets: Sequence[int], rows: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """``[rows, bucket]`` ids and mask, the bucket being the smallest that fits the longest sequence."""
    longest = max(len(s) for s in sequences)
    length = next(b for b in buckets if b >= longest)
    ids = np.full((rows, length), pad_id, np.int32)
    mask = np.zeros((rows, length), np.int32)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def split_trainable(params: Params, config: EncoderConfig, lora: LoraConfig | None, train_norms: bool, rng) -> tuple:
    """(trainable, frozen): everything trains without LoRA; else adapters, head and optionally norms."""
    if lora is None:
        return {"params": params}, {}
    norms = set()
    if train_norms:
        names = ARCHITECTURES[config.architecture].encoder_names(config)
        norms = {path for path, (_, kind) in names.items() if kind == NORM}
    trained, frozen = {}, {}
    for path, value in traverse_util.flatten_dict(params).items():
        (trained if path[0] == "head" or path[:-1] in norms else frozen)[path] = value
    trainable = {"params": traverse_util.unflatten_dict(trained), "lora": init_adapters(params, lora, rng)}
    return trainable, traverse_util.unflatten_dict(frozen)


def assemble(frozen: Params, trainable: Params, lora: LoraConfig | None) -> Params:
    """The full parameter tree the model runs with: frozen + trained, adapters merged in."""
    if lora is None:
        return trainable["params"]
    flat = {**traverse_util.flatten_dict(frozen), **traverse_util.flatten_dict(trainable["params"])}
    return merge(traverse_util.unflatten_dict(flat), trainable["lora"], lora.scale)


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything the compiled train and predict steps depend on besides their array arguments.

    Hashable, so runs with the same model and hyper-parameters (a resumed run,
    a second run in the same process) reuse the compiled programs.
    """

    model: EncoderConfig
    lora: LoraConfig | None
    dtype: str
    learning_rate: float
    warmup_steps: int
    total_steps: int
    weight_decay: float
    clip_norm: float


def make_optimizer(spec: StepSpec) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW under linear warm-up and linear decay to zero."""
    schedule = optax.join_schedules(
        [
            optax.linear_schedule(0.0, spec.learning_rate, max(spec.warmup_steps, 1)),
            optax.linear_schedule(spec.learning_rate, 0.0, max(spec.total_steps - spec.warmup_steps, 1)),
        ],
        [spec.warmup_steps],
    )

    def decay_mask(tree: Params) -> Params:
        return traverse_util.path_aware_map(lambda path, _: path[-1] in DECAYED_LEAVES, tree)

    return optax.chain(
        optax.clip_by_global_norm(spec.clip_norm),
        optax.adamw(schedule, weight_decay=spec.weight_decay, mask=decay_mask),
    )


def _loss(trainable: Params, frozen: Params, ids, mask, labels, row_weights, key, spec: StepSpec) -> jax.Array:
    params = assemble(frozen, trainable, spec.lora)
    model = SequenceClassifier(spec.model, DTYPES[spec.dtype])
    logits = model.apply({"params": params}, ids, mask, deterministic=False, rngs={"dropout": key})
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return (losses * row_weights).sum() / jnp.maximum(row_weights.sum(), jnp.finfo(jnp.float32).tiny)


@functools.partial(jax.jit, static_argnames="spec")
def train_step(trainable, opt_state, frozen, ids, mask, labels, row_weights, key, *, spec: StepSpec):
    """One optimizer step on a padded batch; rows of weight 0 (padding) do not count."""
    loss, grads = jax.value_and_grad(_loss)(trainable, frozen, ids, mask, labels, row_weights, key, spec)
    updates, opt_state = make_optimizer(spec).update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state, loss


@functools.partial(jax.jit, static_argnames="spec")
def predict_step(frozen: Params, trainable: Params, ids: jax.Array, mask: jax.Array, *, spec: StepSpec) -> jax.Array:
    params = assemble(frozen, trainable, spec.lora)
    return probabilities(apply(params, ids, mask, config=spec.model, dtype=DTYPES[spec.dtype]), spec.model)


class Run:
    """State and helpers of one training run (data, model, optimizer, checkpoints)."""

    def __init__(self, config: TrainConfig, progress: bool = True):
        config.validate()
        self.config = config
        self.progress = progress
        self.dir = os.path.abspath(config.output)
        self._check_run_dir()
        folder = config.model or minilm_path()
        self.base = None
        if config.lora:
            if is_adapter_folder(folder):
                raise ConfigError(
                    f"--model {folder} is a LoRA adapter; LoRA needs a full checkpoint as its base "
                    "(fine-tune the adapter's merged model fully with --lora_rank 0, or start from its base)"
                )
            self.base = base_reference(folder, package=None if config.model else MINILM_PACKAGE)
        self.train_data = read_labeled(
            config.train,
            text_field=config.text_field,
            label_field=config.label_field,
            labels=config.labels,
            format=config.format,
        )
        labels = self.train_data.labels
        self.val_data = (
            read_labeled(
                config.val, text_field=config.text_field, label_field=config.label_field, labels=labels, format=config.format
            )
            if config.val
            else None
        )
        checkpoint = load_checkpoint(folder, labels=labels, seed=config.seed)
        if checkpoint.config.multi_label:
            raise ConfigError(f"{folder} is a multi-label model; training supports single-label classification")
        self.model_config = checkpoint.config
        self.text_encoder = TextEncoder.from_folder(folder, min(config.max_length, self.model_config.max_length))
        self.buckets = length_buckets(self.text_encoder.max_length)
        self.train_ids = self.text_encoder.encode(self.train_data.texts)
        self.lengths = np.array([len(s) for s in self.train_ids])
        self.weights = class_weights(config.class_weights, self.train_data)
        self.lora = config.lora
        key = jax.random.PRNGKey(config.seed)
        self.dropout_key, adapter_key = jax.random.split(key)
        trainable, frozen = split_trainable(checkpoint.params, self.model_config, self.lora, config.train_norms, adapter_key)
        self.frozen = jax.tree_util.tree_map(jnp.asarray, frozen)
        self.trainable = jax.tree_util.tree_map(jnp.asarray, trainable)
        self.steps_per_epoch = len(epoch_batches(self.lengths, config.batch_size, config.seed, 0))
        self.total_steps = self.steps_per_epoch * config.epochs
        self.spec = StepSpec(
            model=self.model_config,
            lora=self.lora,
            dtype=config.dtype,
            learning_rate=config.learning_rate,
            warmup_steps=int(config.warmup_ratio * self.total_steps),
            total_steps=self.total_steps,
            weight_decay=config.weight_decay,
            clip_norm=config.clip_norm,
        )
        self.opt_state = make_optimizer(self.spec).init(self.trainable)
        self.step = 0
        self.best_macro_f1 = -1.0
        self.best_epoch = -1
        self.val_ids = self.text_encoder.encode(self.val_data.texts) if self.val_data else []

    def _check_run_dir(self) -> None:
        """Refuses to resume a run directory that was started with other settings."""
        path = os.path.join(self.dir, RUN_CONFIG)
        if not os.path.exists(path):
            return
        wanted = self.config.to_json()
        with open(path) as f:
            stored = json.load(f)
        if stored != wanted:
            changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise ConfigError(
                f"{self.dir} holds a run with other settings ({', '.join(changed)} differ); "
                "rerun the original command to resume it, or choose another --output"
            )

    def _record_config(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, RUN_CONFIG), "w") as f:
            json.dump(self.config.to_json(), f, indent=2)

    def params(self) -> Params:
        return assemble(self.frozen, self.trainable, self.lora)

    # -- checkpoints ------------------------------------------------------------------

    def _manager(self):
        import orbax.checkpoint as ocp

        options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
        return ocp.CheckpointManager(os.path.join(self.dir, CHECKPOINTS), options=options)

    def _state(self) -> dict[str, Any]:
        return {
            "trainable": self.trainable,
            "opt_state": self.opt_state,
            "best_macro_f1": np.asarray(self.best_macro_f1, np.float64),
            "best_epoch": np.asarray(self.best_epoch, np.int64),
        }

    def save(self, manager) -> None:
        import orbax.checkpoint as ocp

        if manager.latest_step() != self.step:
            manager.save(self.step, args=ocp.args.StandardSave(self._state()), force=True)
            manager.wait_until_finished()

    def restore(self, manager) -> None:
        import orbax.checkpoint as ocp

        latest = manager.latest_step()
        if latest is None:
            return
        state = manager.restore(latest, args=ocp.args.StandardRestore(self._state()))
        self.trainable = state["trainable"]
        self.opt_state = state["opt_state"]
        self.best_macro_f1 = float(state["best_macro_f1"])
        self.best_epoch = int(state["best_epoch"])
        self.step = int(latest)
        self._truncate_log()
        log.info("resumed %s at step %d of %d", self.dir, self.step, self.total_steps)

    # -- logging, evaluation, export -----------------------------------------------

    def _truncate_log(self) -> None:
        """Drops log entries after the restored step: those steps run again."""
        path = os.path.join(self.dir, METRICS_LOG)
        if not os.path.exists(path):
            return
        with open(path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= self.step]
        with open(path, "w") as f:
            f.writelines(kept)

    def log_metrics(self, record: dict[str, Any]) -> None:
        with open(os.path.join(self.dir, METRICS_LOG), "a") as f:
            f.write(json.dumps(record) + "\n")

    def predict_ids(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Class probabilities of the current parameters, batched by length like the predictor."""
        out = np.zeros((len(sequences), self.model_config.num_labels), np.float32)
        order = np.argsort([len(s) for s in sequences], kind="stable")
        rows = self.config.eval_batch_size
        for start in range(0, len(order), rows):
            chunk = order[start : start + rows]
            ids, mask = pad_batch([sequences[i] for i in chunk], self.buckets, rows, self.model_config.pad_token_id)
            out[chunk] = np.asarray(predict_step(self.frozen, self.trainable, ids, mask, spec=self.spec))[: len(chunk)]
        return out

    def evaluate(self) -> dict[str, Any]:
        return evaluate(self.val_data.label_ids, self.predict_ids(self.val_ids), self.model_config.labels)

    def export(self, folder: str) -> str:
        return export_model(
            folder,
            config=self.model_config,
            params=self.params(),
            text_encoder=self.text_encoder,
            adapters=self.trainable.get("lora"),
            trained=self.trainable["params"] if self.lora else None,
            lora=self.lora,
            base=self.base,
        )

    def end_epoch(self, epoch: int, train_loss: float) -> None:
        record: dict[str, Any] = {"event": "epoch", "epoch": epoch, "step": self.step, "train_loss": train_loss}
        best = os.path.join(self.dir, BEST)
        if self.val_data is None:
            self.export(best)
            self.best_epoch = epoch
        else:
            report = self.evaluate()
            record.update(
                val_macro_f1=report["macro_f1"],
                val_weighted_f1=report["weighted_f1"],
                val_accuracy=report["accuracy"],
                val_f1={name: scores["f1"] for name, scores in report["per_class"].items()},
            )
            if report["macro_f1"] > self.best_macro_f1:
                self.best_macro_f1, self.best_epoch = report["macro_f1"], epoch
                self.export(best)
            record["best_epoch"] = self.best_epoch
        self.log_metrics(record)
        log.info("epoch %d: %s", epoch, json.dumps(record))

    # -- the loop --------------------------------------------------------------------

    def run(self, stop_after_steps: int | None = None) -> TrainResult:
        from tqdm import tqdm

        self._record_config()
        manager = self._manager()
        self.restore(manager)
        cfg = self.config
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not self.progress,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        started, window, batches = time.time(), [], {}
        try:
            while self.step < self.total_steps:
                if stop_after_steps is not None and self.step >= stop_after_steps:
                    break
                epoch, position = divmod(self.step, self.steps_per_epoch)
                if epoch not in batches:
                    batches = {epoch: epoch_batches(self.lengths, cfg.batch_size, cfg.seed, epoch)}
                rows = batches[epoch][position]
                ids, mask = pad_batch([self.train_ids[i] for i in rows], self.buckets, cfg.batch_size, self.model_config.pad_token_id)
                labels = np.zeros(cfg.batch_size, np.int32)
                labels[: len(rows)] = self.train_data.label_ids[rows]
                row_weights = np.zeros(cfg.batch_size, np.float32)
                row_weights[: len(rows)] = self.weights[labels[: len(rows)]]
                self.trainable, self.opt_state, loss = train_step(
                    self.trainable,
                    self.opt_state,
                    self.frozen,
                    ids,
                    mask,
                    labels,
                    row_weights,
                    jax.random.fold_in(self.dropout_key, self.step),
                    spec=self.spec,
                )
                self.step += 1
                window.append(float(loss))
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(window[-LOG_EVERY_STEPS:]):.4f}", refresh=False)
                if self.step % LOG_EVERY_STEPS == 0:
                    self.log_metrics(
                        {
                            "event": "train",
                            "epoch": epoch + 1,
                            "step": self.step,
                            "loss": float(np.mean(window[-LOG_EVERY_STEPS:])),
                            "elapsed_s": round(time.time() - started, 1),
                        }
                    )
                if self.step % self.steps_per_epoch == 0:
                    self.end_epoch(epoch + 1, float(np.mean(window[-self.steps_per_epoch :])))
                    self.save(manager)
                elif self.step % cfg.save_every == 0:
                    self.save(manager)
            self.save(manager)
        except KeyboardInterrupt:
            self.save(manager)
            log.warning("interrupted at step %d; run the same command again to resume", self.step)
            raise
        finally:
            bar.close()
            manager.close()
        best = os.path.join(self.dir, BEST)
        return TrainResult(
            step=self.step,
            total_steps=self.total_steps,
            best_folder=best if os.path.isdir(best) else None,
            best_macro_f1=self.best_macro_f1 if self.best_macro_f1 >= 0 else None,
            best_epoch=self.best_epoch if self.best_epoch >= 0 else None,
            trainable=self.trainable,
            params=self.params(),
        )


def train(config: TrainConfig, *, stop_after_steps: int | None = None, progress: bool = True) -> TrainResult:
    """Runs (or resumes) training; ``stop_after_steps`` checkpoints and returns at that global step."""
    return Run(config, progress=progress).run(stop_after_steps)


def _tuple(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, int | None]:
    d = TrainConfig(train="", output="")
    p = argparse.ArgumentParser(prog="flaxmodel-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True, help="Labeled training data: file, glob or comma-separated list.")
    p.add_argument("--val", default=None, help="Validation data (same formats); best epoch chosen by its macro F1.")
    p.add_argument("--output", required=True, help="Run directory (checkpoints, metrics.jsonl, best/); rerun to resume.")
    p.add_argument("--model", default=None, help="Checkpoint folder to start from; default: the MiniLM-L6 encoder.")
    p.add_argument("--labels", default=None, help="Label names in id order, e.g. hate,offensive,neither.")
    p.add_argument("--text_field", default=d.text_field)
    p.add_argument("--label_field", default=d.label_field)
    p.add_argument("--format", default=d.format, choices=FORMATS)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch_size", type=int, default=d.batch_size)
    p.add_argument("--max_length", type=int, default=d.max_length, help="Tokens per text, special tokens included.")
    p.add_argument("--learning_rate", type=float, default=d.learning_rate, help="Peak learning rate.")
    p.add_argument("--warmup_ratio", type=float, default=d.warmup_ratio)
    p.add_argument("--weight_decay", type=float, default=d.weight_decay)
    p.add_argument("--clip_norm", type=float, default=d.clip_norm, help="Global gradient-norm clip.")
    p.add_argument("--class_weights", default=d.class_weights, help="'balanced', 'sqrt' or name=weight pairs.")
    p.add_argument("--lora_rank", type=int, default=d.lora_rank, help="LoRA rank; 0 trains every parameter.")
    p.add_argument("--lora_alpha", type=float, default=d.lora_alpha)
    p.add_argument("--lora_targets", default=",".join(d.lora_targets), help="Dense modules that get adapters.")
    p.add_argument("--train_norms", action="store_true", help="With LoRA, also train the layer norms.")
    p.add_argument("--dtype", default=d.dtype, choices=sorted(DTYPES), help="Compute dtype (bfloat16 on accelerators).")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--save_every", type=int, default=d.save_every, help="Checkpoint every N steps (and at epoch ends).")
    p.add_argument("--eval_batch_size", type=int, default=d.eval_batch_size)
    p.add_argument("--stop_after_steps", type=int, default=None, help="Checkpoint and stop at this global step.")
    args = p.parse_args(argv)
    config = TrainConfig(
        train=args.train,
        output=args.output,
        val=args.val,
        model=args.model,
        labels=_tuple(args.labels) if args.labels else None,
        text_field=args.text_field,
        label_field=args.label_field,
        format=args.format,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        clip_norm=args.clip_norm,
        class_weights=args.class_weights,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_targets=_tuple(args.lora_targets),
        train_norms=args.train_norms,
        dtype=args.dtype,
        seed=args.seed,
        save_every=args.save_every,
        eval_batch_size=args.eval_batch_size,
    )
    return config, args.stop_after_steps


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # orbax reports every save step by step through absl at INFO.
    logging.getLogger("absl").setLevel(logging.WARNING)
    config, stop_after = parse_args(argv)
    try:
        result = train(config, stop_after_steps=stop_after)
    except (ConfigError, CheckpointError, DataError) as err:
        sys.exit(f"flaxmodel-train: {err}")
    summary = {
        "step": result.step,
        "total_steps": result.total_steps,
        "best_folder": result.best_folder,
        "best_epoch": result.best_epoch,
        "best_val_macro_f1": result.best_macro_f1,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
