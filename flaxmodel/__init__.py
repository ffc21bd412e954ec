"""Flax/JAX text classifiers that load Hugging Face checkpoint folders without torch.

The package is four one-way layers; each imports only the layers before it:

- ``flaxmodel.core``: model math (config, layers, architectures, the pure
  ``apply(params, input_ids, attention_mask)``, LoRA as a parameter transform);
- ``flaxmodel.ckpts``: checkpoint I/O (safetensors, the weights-only ``.bin``
  reader, Hugging Face folders, adapter folders, the default model's location);
- ``flaxmodel.inference``: tokenizer, shape grid and batch planner, the jitted
  ``Classifier`` and ``load_classifier``, metric math;
- ``flaxmodel.training``: fine-tuning, labeled-data readers, export (its
  libraries are the ``[train]`` extra).

``flaxmodel.errors``, ``flaxmodel.flags``, ``flaxmodel.commands`` (how every
command ends) and ``flaxmodel.records`` (the one format layer: text files into
records or dead letters, for the jobs and for training) sit below them all.  The names below are the public API: what the
pipelines, the benchmarks and users import; every other module is private to the
package.  Importing it never imports training.
"""

from flaxmodel.ckpts.checkpoint import Checkpoint, save_checkpoint
from flaxmodel.ckpts.default_model import MINILM_PACKAGE, default_model_path, minilm_path
from flaxmodel.ckpts.loader import load_checkpoint
from flaxmodel.ckpts.thresholds import recommended_thresholds, write_thresholds
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.model import apply, forward_flops, hidden_states
from flaxmodel.core.precision import PRECISIONS
from flaxmodel.errors import CheckpointError, ConfigError, DataError, ModerationError, OptionError, TokenizerError
from flaxmodel.inference import (
    AUTO_PRECISION,
    Classifier,
    ModelRef,
    ShapeGrid,
    Tokenizer,
    TokenWindows,
    evaluate,
    grid_for,
    load_classifier,
    mapped_benign,
    mapped_predictions,
    mapped_probabilities,
    multilabel_scores,
    pad_batch,
    pad_windows,
    parse_label,
    parse_label_map,
    parse_label_set,
    resolve_model,
    set_label_scores,
    threshold_for_precision,
    thresholds_for_precision,
)

__all__ = [
    "AUTO_PRECISION",
    "MINILM_PACKAGE",
    "PRECISIONS",
    "Checkpoint",
    "CheckpointError",
    "Classifier",
    "ConfigError",
    "DataError",
    "EncoderConfig",
    "ModelRef",
    "ModerationError",
    "OptionError",
    "ShapeGrid",
    "Tokenizer",
    "TokenWindows",
    "TokenizerError",
    "apply",
    "default_model_path",
    "evaluate",
    "forward_flops",
    "grid_for",
    "hidden_states",
    "load_checkpoint",
    "load_classifier",
    "mapped_benign",
    "mapped_predictions",
    "mapped_probabilities",
    "minilm_path",
    "multilabel_scores",
    "pad_batch",
    "pad_windows",
    "parse_label",
    "parse_label_map",
    "parse_label_set",
    "recommended_thresholds",
    "resolve_model",
    "save_checkpoint",
    "set_label_scores",
    "threshold_for_precision",
    "thresholds_for_precision",
    "write_thresholds",
]
