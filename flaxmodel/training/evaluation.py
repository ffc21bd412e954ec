"""The end of an epoch: validation scores, the metrics record and the export of the best model.

Each validation set is scored on its own labels: plain ``--val`` data by its
macro F1; a mixture's source by its macro F1 over its label sets when they do
not overlap ("hate" against "offensive or neither"), else by the share of rows
whose predicted class its label allows (see
:func:`flaxmodel.inference.metrics.set_label_scores`); the functional suite
also per functionality.  The epoch's score is the mean over the sets, so every
source counts alike whatever its size.  With validation data, ``best/`` holds
the model of the epoch with the best score so far; without it, the latest
epoch's model.  The best
score and epoch live in the :class:`~flaxmodel.training.state.TrainState`, so a
resumed run keeps choosing against the same record.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from flaxmodel.inference.metrics import evaluate, set_label_scores
from flaxmodel.training.export import export_model
from flaxmodel.training.prepare import Prepared
from flaxmodel.training.run_dir import BEST, log_metrics
from flaxmodel.training.state import TrainState, assemble, predict, with_best

log = logging.getLogger(__name__)


def evaluate_state(run: Prepared, state: TrainState) -> dict[str, dict[str, Any]]:
    """Validation scores of the state's model, per validation set.

    Args:
      run: the run, which must have validation data.
      state: whose parameters to score.

    Returns:
      Set name -> report.  A set labeled with our classes (``--val``) gets
      :func:`flaxmodel.inference.metrics.evaluate`'s report (``macro_f1``,
      ``weighted_f1``, ``accuracy``, ``per_class``, ...); a mixture's source
      :func:`~flaxmodel.inference.metrics.set_label_scores`'.  Each has ``score``.
    """
    reports = {}
    for val, ids in run.val_sets:
        probabilities = predict(state, run.frozen, ids, run.eval_grid, run.spec)
        if val.label_names == run.model_config.labels and (val.allowed == np.eye(len(val.label_names), dtype=bool)).all():
            report = evaluate(val.label_ids, probabilities, run.model_config.labels)
            report["score"] = report["macro_f1"]
        else:
            report = set_label_scores(probabilities, val.allowed[val.label_ids], run.model_config.labels, val.groups)
        reports[val.name] = report
    return reports


def _summary(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The metrics record's validation fields: one set's figures as they are, several sets' per source."""
    if len(reports) == 1:
        (report,) = reports.values()
        return dict(
            val_macro_f1=report["macro_f1"],
            val_weighted_f1=report["weighted_f1"],
            val_accuracy=report["accuracy"],
            val_f1={name: scores["f1"] for name, scores in report["per_class"].items()},
        )
    keep = ("score", "accuracy", "macro_f1", "groups")
    return dict(
        val_macro_f1=float(np.mean([r["score"] for r in reports.values()])),
        val_sources={name: {k: r[k] for k in keep if k in r} for name, r in reports.items()},
    )


def _without_target_head(params: dict) -> dict:
    return {name: value for name, value in params.items() if name != "target_head"}


def export_state(run: Prepared, state: TrainState, folder: str) -> str:
    """Writes the state's model to ``folder``: a full checkpoint, or an adapter folder under LoRA.

    A target head trained beside the classes (``--target_weight``) stays out: it has no thresholds yet,
    and ``python -m flaxmodel.training.targets`` fits the shipped head on the exported encoder.
    """
    lora = run.spec.lora
    return export_model(
        folder,
        config=run.model_config.with_targets(),
        params=_without_target_head(assemble(run.frozen, state.trainable, lora)),
        tokenizer=run.tokenizer,
        adapters=state.trainable.get("lora"),
        trained=_without_target_head(state.trainable["params"]) if lora else None,
        lora=lora,
        base=run.base,
        training_data=run.training_data,
    )


def end_epoch(run: Prepared, state: TrainState, epoch: int, train_loss: float) -> TrainState:
    """Scores the epoch's model, logs the epoch and exports ``best/`` if it is the best so far.

    Args:
      run: the run.
      state: the state after the epoch's last step.
      epoch: the epoch just finished, counting from 1.
      train_loss: the mean training loss of the epoch's steps.

    Returns:
      ``state`` with the best score and epoch updated.
    """
    record: dict[str, Any] = {"event": "epoch", "epoch": epoch, "step": int(state.step), "train_loss": train_loss}
    best_folder = os.path.join(run.run_dir, BEST)
    if not run.val_sets:
        export_state(run, state, best_folder)
        state = with_best(state, None, epoch)
    else:
        record.update(_summary(evaluate_state(run, state)))
        # Compared at the precision the state keeps, so an epoch that only ties the best does not replace it.
        score = np.float32(record["val_macro_f1"])
        if score > state.best_macro_f1:
            state = with_best(state, score, epoch)
            export_state(run, state, best_folder)
        record["best_epoch"] = int(state.best_epoch)
    log_metrics(run.run_dir, record)
    log.info("epoch %d: %s", epoch, json.dumps(record))
    return state
