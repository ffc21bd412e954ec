"""Inference: a model's reference, its tokenizer, the shape grid and planner, the jitted Classifier, metric math.

The names below are the inference API (re-exported by :mod:`flaxmodel`); the
modules behind them are private to the package.
"""

from flaxmodel.inference.calibration import AUTO_PRECISION
from flaxmodel.inference.label_map import mapped_benign, mapped_predictions, mapped_probabilities, parse_label_map
from flaxmodel.inference.metrics import (
    evaluate,
    multilabel_scores,
    parse_label,
    parse_label_set,
    set_label_scores,
    threshold_for_precision,
    threshold_for_f1,
    thresholds_for_precision,
)
from flaxmodel.inference.predictor import Classifier, load_classifier
from flaxmodel.inference.reference import ModelRef, resolve_model
from flaxmodel.inference.padding import pad_batch, pad_windows
from flaxmodel.inference.planner import ShapeGrid, grid_for
from flaxmodel.inference.tokenizer import Tokenizer, TokenWindows

__all__ = [
    "AUTO_PRECISION",
    "Classifier",
    "ModelRef",
    "ShapeGrid",
    "Tokenizer",
    "TokenWindows",
    "evaluate",
    "multilabel_scores",
    "grid_for",
    "load_classifier",
    "mapped_benign",
    "mapped_predictions",
    "mapped_probabilities",
    "pad_batch",
    "pad_windows",
    "parse_label",
    "parse_label_map",
    "parse_label_set",
    "resolve_model",
    "set_label_scores",
    "threshold_for_f1",
    "threshold_for_precision",
    "thresholds_for_precision",
]
