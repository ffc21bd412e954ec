"""Adapting a trained model to a platform's own labels: :func:`adapt`, the training side of ``moderate-adapt``.

The run, in order:

1. the starting model (a bundled name, a folder or ``gs://``), its classes or a fresh head's (``--new_head``);
2. the user's rows (:mod:`~flaxmodel.training.adapt_data`): labels mapped onto the classes, weights, strata;
3. the frozen layers' states and the starting model's probabilities (and target scores), once per text
   (:mod:`~flaxmodel.training.adapt_run`);
4. selection: each learning rate trained on the training share and scored on the held-out rows after each epoch
   (or k folds under 300 rows); the best (rate, epoch) by weighted macro F1 over the user's labels;
5. the learning curve: the same settings on 25% and 50% of the training rows;
6. thresholds for ``--precision_target`` on the held-out rows, weighted (and the target groups', when the rows
   name them: :mod:`~flaxmodel.training.adapt_targets`);
7. the folder (:mod:`~flaxmodel.training.adapt_export`), with the caller's report files in it.

Each training unit's results are kept in ``OUTPUT.adapting/`` (beside a local output, else in the temporary
folder) as it finishes, so an interrupted run, rerun with the same settings, goes on from the last finished
unit; the folder is removed once the model is written.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np
from flax import traverse_util

from flaxmodel.ckpts.default_model import model_folder
from flaxmodel.ckpts.loader import load_checkpoint
from flaxmodel.ckpts.target_head import read_target_head_spec
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.lora import DENSE_MODULES, LoraConfig
from flaxmodel.core.model import Params, init_params
from flaxmodel.errors import ConfigError
from flaxmodel.inference.label_map import allowed_mask, mapped_predictions, parse_label_map
from flaxmodel.inference.tokenizer import Tokenizer
from flaxmodel.training.adapt_config import AdaptConfig
from flaxmodel.training.adapt_data import (
    AdaptRows,
    read_reviewed_rows,
    read_train_rows,
    read_unlabeled,
    splits,
    subsample,
)
from flaxmodel.training.adapt_export import adapter_over_base, export_adapted
from flaxmodel.training.adapt_figures import choose_thresholds, macro_f1
from flaxmodel.training.adapt_run import Cache, Targets, Unit, bucket_of, buckets_for, build_cache, predict_final, warm_up
from flaxmodel.training.adapt_step import AdaptSpec
from flaxmodel.training.adapt_targets import kept_scores, refit_thresholds, row_groups
from flaxmodel.training.adapt_units import UnitRunner
from flaxmodel.training.provenance import read_record
from flaxmodel.training.state import HEADS

log = logging.getLogger(__name__)

CURVE_SHARES = (0.25, 0.5)


@dataclasses.dataclass(frozen=True)
class AdaptOutcome:
    """What an adapting run did, for its report and card.

    Attributes:
      output: the model folder written.
      start: the starting model's folder.
      classes: the adapted model's classes; ``names`` the user's labels and ``label_map`` what each allows.
      rows: the user's rows; ``held`` the rows every figure is computed on (held out, or out of fold).
      before, after: float32 ``[len(held), classes]`` the starting (None with a new head) and the adapted
        model's class probabilities on them.
      selection: per learning rate and epoch, the held-out weighted macro F1; ``chosen`` the winner.
      curve: the held-out weighted macro F1 at each share of the training rows.
      thresholds: per class, the threshold chosen for ``precision_target`` and what it reaches.
      target_head: with rows that name target groups, how the re-fitted head's thresholds were chosen (per
        group, :func:`~flaxmodel.training.adapt_targets.refit_thresholds`); None when the start's is kept.
      unlabeled: texts distilled on without labels.
      seconds: the run's wall time; ``phases`` its seconds by phase (loading, the frozen layers' pass,
        compiling, selection, learning curve and final model, export).
    """

    output: str
    start: str
    classes: tuple[str, ...]
    names: tuple[str, ...]
    label_map: dict[str, tuple[str, ...]]
    rows: AdaptRows
    held: np.ndarray
    before: np.ndarray | None
    after: np.ndarray
    selection: list[dict[str, Any]]
    chosen: dict[str, Any]
    curve: list[dict[str, Any]]
    thresholds: dict[str, dict[str, Any]]
    target_head: dict[str, dict[str, Any]] | None
    folds: int
    unlabeled: int
    seconds: float
    phases: dict[str, float]


def _start(config: AdaptConfig) -> tuple[str, Any, Params, Tokenizer, dict[str, tuple[str, ...]]]:
    """The starting folder, the adapted model's config and merged parameters (with the starting model's target
    head, which the loss keeps, unless a new head replaces the classes), the tokenizer, the label map."""
    folder = model_folder(config.model)
    checkpoint = load_checkpoint(folder, target_head=not config.new_head)
    model, params = checkpoint.config, checkpoint.params
    if model.multi_label:
        raise ConfigError(f"--model {config.model} is a multi-label model; adapting supports single-label classifiers")
    if config.new_head:
        model = model.with_labels(tuple(config.new_head))
        params = {**params, "head": init_params(model, jax.random.PRNGKey(config.seed))["head"]}
        label_map = {name: (name,) for name in config.new_head}
    else:
        label_map = parse_label_map(config.label_map, model.labels)
    tokenizer = Tokenizer.from_folder(folder, min(config.max_length, model.max_length))
    return folder, model, params, tokenizer, label_map


def _upper(params: Params, start: int) -> Params:
    """The parameters of the layers from ``start`` on and of the heads (the cache stands for the rest)."""
    below = {f"layer_{i}" for i in range(start)}
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict(
        {p: v for p, v in flat.items() if p[0] in HEADS or (p[0] == "encoder" and p[1] != "embeddings" and p[1] not in below)}
    )


def _targets(
    rows: AdaptRows, label_map: Mapping[str, tuple[str, ...]], classes: tuple[str, ...], cache: Cache, n_unlabeled: int, groups: np.ndarray | None
) -> Targets:
    """Allowed classes, renormalised teacher targets, weights (mean 1 over the labeled rows) and the target scores
    to keep, of every cached text."""
    allowed = np.concatenate([allowed_mask(label_map, classes)[rows.labels], np.ones((n_unlabeled, len(classes)), np.float32)])
    weights = np.concatenate([rows.weights / rows.weights.mean(), np.ones(n_unlabeled)])
    teacher = np.zeros((len(allowed), len(classes)), np.float32) if cache.teacher is None else cache.teacher
    soft = teacher[:, : len(classes)] * allowed
    soft = soft / np.maximum(soft.sum(axis=1, keepdims=True), 1e-12)
    kept, said = kept_scores(teacher[:, len(classes) :], groups)
    return Targets(allowed.astype(np.float32), soft.astype(np.float32), weights.astype(np.float32), kept, said)


@dataclasses.dataclass(frozen=True)
class _Scorer:
    """Weighted macro F1 in the user's labels of class probabilities on some rows."""

    rows: AdaptRows
    label_map: Mapping[str, tuple[str, ...]]
    classes: tuple[str, ...]

    def __call__(self, probabilities: np.ndarray, held: np.ndarray) -> float:
        predicted = mapped_predictions(probabilities, self.label_map, self.classes)
        return macro_f1(self.rows.labels[held], predicted, self.rows.weights[held], len(self.label_map))


def _select(runner: UnitRunner, folds, config: AdaptConfig, score: _Scorer) -> tuple | None:
    """Each rate on every fold; the best (rate, epoch): ``(table, chosen, held, after, final params or None)``."""
    units = {
        (rate, f): Unit(train, held, rate, config.epochs, config.seed + f)
        for rate in config.learning_rates
        for f, (train, held) in enumerate(folds)
    }
    runner.plan([(f"select-{rate:g}-fold{f}", unit) for (rate, f), unit in units.items()])
    results = {}
    for (rate, f), unit in units.items():
        results[rate, f] = runner.run(f"select-{rate:g}-fold{f}", unit)
        if results[rate, f] is None:
            return None
    held = np.concatenate([h for _, h in folds])
    table = []
    for rate in config.learning_rates:
        for e in range(config.epochs):
            probabilities = np.concatenate([results[rate, f][0][e] for f in range(len(folds))])
            table.append({"learning_rate": rate, "epochs": e + 1, "macro_f1": score(probabilities, held)})
    # Ties go to fewer epochs, then the lower rate: the smaller change to the starting model.
    best = max(table, key=lambda r: (round(r["macro_f1"], 6), -r["epochs"], -r["learning_rate"]))
    e = best["epochs"] - 1
    after = np.concatenate([results[best["learning_rate"], f][0][e] for f in range(len(folds))])
    final = results[best["learning_rate"], 0][1][e] if len(folds) == 1 else None
    return table, best, held, after, final


def _curve(runner: UnitRunner, rows: AdaptRows, folds, config: AdaptConfig, best: dict, score: _Scorer) -> list | None:
    """The held-out macro F1 of the chosen settings on 25%, 50% and all of the training rows."""
    units = {
        (share, f): Unit(subsample(train, rows.strata, share, config.seed), held, best["learning_rate"], best["epochs"], config.seed + f)
        for share in CURVE_SHARES
        for f, (train, held) in enumerate(folds)
    }
    runner.plan([(f"curve-{share:g}-fold{f}", unit) for (share, f), unit in units.items()])
    held = np.concatenate([h for _, h in folds])
    curve = []
    for share in CURVE_SHARES:
        outs = [runner.run(f"curve-{share:g}-fold{f}", units[share, f]) for f in range(len(folds))]
        if any(out is None for out in outs):
            return None
        trained = int(np.mean([len(units[share, f].rows) for f in range(len(folds))]))
        curve.append({"share": share, "rows": trained, "macro_f1": score(np.concatenate([o[0][-1] for o in outs]), held)})
    trained = int(np.mean([len(train) for train, _ in folds]))
    return curve + [{"share": 1.0, "rows": trained, "macro_f1": best["macro_f1"]}]


def _target_head(
    folder: str, model: EncoderConfig, groups: np.ndarray | None, final: Params, held: np.ndarray, folds: int, predict: Callable[[], np.ndarray], weights: np.ndarray
) -> tuple[Params, tuple | None]:
    """The final model's class-side parameters, and its re-fitted target head for the folder (None: the
    start's is copied).  Thresholds are re-chosen only on a held-out share: with folds, the final model has
    seen every row."""
    if groups is None:
        return final["params"], None
    params = dict(final["params"])
    head = params.pop("target_head")
    held = held if folds == 1 else held[:0]
    start = read_target_head_spec(folder).thresholds
    scores = predict() if len(held) else np.zeros((0, len(model.targets)), np.float32)
    chosen = refit_thresholds(scores, groups[held], weights[held], start, model.targets)
    how = {
        "input": "first-token state of the adapted model's last layer",
        "trained_on": f"{int((~np.isnan(groups).all(axis=1)).sum())} of your rows that name target groups, and the "
        "starting model's scores elsewhere",
        "per_category": chosen,
    }
    return params, (model.targets, head, {c: t["threshold"] for c, t in chosen.items()}, how)


def _record(config: AdaptConfig, folder: str, rows: AdaptRows, label_map, unlabeled: int) -> dict[str, Any]:
    """``training_data.json``: the start's identity and record, then the user's rows and map."""
    start = read_record(folder)
    adapted = {**rows.record, "label_map": {k: list(v) for k, v in label_map.items()}, "unlabeled": unlabeled}
    return {
        "use": start.get("use", "default"),
        "adapted_from": {"model": config.model, "folder": folder, "training_data": start},
        "adapt": {**adapted, "settings": config.to_json()},
    }


def _fingerprint(rows: AdaptRows, unlabeled: list[str]) -> dict[str, Any]:
    digest = hashlib.sha256()
    for text, label, weight in zip(rows.texts, rows.labels.tolist(), rows.weights.tolist()):
        digest.update(f"{text}\0{label}\0{weight!r}\0".encode("utf-8", "surrogatepass"))
    for text in unlabeled:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return {"rows": len(rows), "unlabeled": len(unlabeled), "sha256": digest.hexdigest()}


def adapt(
    config: AdaptConfig,
    *,
    report: Callable[[AdaptOutcome], Mapping[str, bytes]] = lambda outcome: {},
    stop_after_units: int | None = None,
    progress: bool = True,
) -> AdaptOutcome | None:
    """Adapts ``config.model`` to the user's rows and writes the model folder ``config.output``.

    Args:
      config: the run's settings (checked first, before any data is read).
      report: files to write into the folder, by name, from the run's outcome (the report, the card).
      stop_after_units: stop once this many training units have finished in this invocation (their
        results kept); rerunning goes on from there.
      progress: show a progress bar over the training steps.

    Returns:
      The outcome, or None when stopped by ``stop_after_units``.

    Raises:
      ConfigError, DataError, CheckpointError: naming what to fix, before any training.
    """
    began = time.perf_counter()
    phases: dict[str, float] = {}

    def mark(phase: str) -> None:
        phases[phase] = round(time.perf_counter() - began - sum(phases.values()), 2)

    config.validate()
    if config.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", config.compilation_cache_dir)
        # Every program of a run is worth keeping: the default skips those compiled in under a second.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    folder, model, params, tokenizer, label_map = _start(config)
    rows = (read_reviewed_rows if config.reviewed else read_train_rows)(config, tuple(label_map))
    groups = row_groups(rows, model.targets, config.target_field)
    unlabeled = read_unlabeled(config)
    runner = UnitRunner.open(config, _fingerprint(rows, unlabeled), stop_after=stop_after_units, progress=progress)
    start = max(0, model.num_layers - config.layers)
    ids = tokenizer.encode(rows.texts + unlabeled)
    mark("load and read")
    lora = LoraConfig(rank=config.lora_rank, alpha=2.0 * config.lora_rank, targets=DENSE_MODULES)
    spec = AdaptSpec(model, lora, start, 0.0 if config.new_head else config.distill_weight, refit_targets=groups is not None)
    upper = _upper(params, start)
    lengths = {bucket_of(len(s), buckets_for(tokenizer.max_length)) for s in ids}
    warm_up(params, upper, spec, config.batch_size, lengths, teacher=not config.new_head)
    mark("compile")
    log.info("running the %d frozen layers once over %d texts", start, len(ids))
    cache = build_cache(params, ids, model, start, config.batch_size, tokenizer.max_length, teacher=not config.new_head)
    mark("frozen layers")
    unlabeled_rows = np.arange(len(rows), len(ids))
    targets = _targets(rows, label_map, model.labels, cache, len(unlabeled), groups)
    runner.attach(cache=cache, targets=targets, unlabeled=unlabeled_rows, upper=upper, spec=spec, batch_rows=config.batch_size)
    folds = splits(rows, config)
    score = _Scorer(rows, label_map, model.labels)
    selected = _select(runner, folds, config, score)
    if selected is None:
        return runner.close(remove=False)
    table, best, held, after, final = selected
    mark("selection")
    # With folds, the model itself is trained on every row with the chosen settings.
    whole = Unit(np.arange(len(rows)), np.zeros(0, np.int64), best["learning_rate"], best["epochs"], config.seed)
    runner.plan([] if final is not None else [("final", whole)])
    curve = _curve(runner, rows, folds, config, best, score)
    results = None if curve is None or final is not None else runner.run("final", whole)
    if curve is None or (final is None and results is None):
        return runner.close(remove=False)
    final = final if final is not None else results[1][-1]
    runner.close(remove=False)
    mark("learning curve and final model")
    # The folder's own files carry the target head: the adapter holds the rest.
    plain, encoder_params = model.with_targets(), {k: v for k, v in params.items() if k != "target_head"}
    predict = functools.partial(predict_final, final, upper, cache, held, spec, config.batch_size)
    trained, target_head = _target_head(folder, model, groups, final, held, len(folds), predict, rows.weights)
    thresholds = choose_thresholds(after, rows.labels[held], rows.weights[held], label_map, model.labels, config.benign_label, config.precision_target)
    outcome = AdaptOutcome(
        output=config.output, start=folder, classes=model.labels, names=tuple(label_map), label_map=dict(label_map),
        rows=rows, held=held, before=None if cache.teacher is None else cache.teacher[held, : len(model.labels)], after=after,
        selection=table, chosen=best, curve=curve, thresholds=thresholds, target_head=None if target_head is None else target_head[3]["per_category"], folds=len(folds), unlabeled=len(unlabeled),
        seconds=time.perf_counter() - began, phases=phases,
    )  # fmt: skip
    how = {"target_precision": config.precision_target, "per_class": thresholds, "chosen_on": f"{len(held)} held-out rows of your data, weighted"}
    export_adapted(
        config.output, start_folder=folder, config=plain, tokenizer=tokenizer,
        adapter=adapter_over_base(folder, encoder_params, final["lora"], lora, trained, plain), target_head=target_head,
        thresholds=({c: t["threshold"] for c, t in thresholds.items() if t["threshold"] is not None}, how),
        training_data=_record(config, folder, rows, label_map, len(unlabeled)), extra_files=report(outcome),
    )  # fmt: skip
    runner.close(remove=True)
    mark("export")
    return dataclasses.replace(outcome, seconds=time.perf_counter() - began)
