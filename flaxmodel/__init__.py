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

``flaxmodel.errors`` and ``flaxmodel.flags`` sit below them all.  This module
is the inference API the pipelines use; importing it never imports training.
"""

from flaxmodel.ckpts.checkpoint import Checkpoint, save_checkpoint
from flaxmodel.ckpts.default_model import MINILM_PACKAGE, default_model_path, minilm_path
from flaxmodel.ckpts.loader import load_checkpoint
from flaxmodel.ckpts.thresholds import recommended_thresholds
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.model import apply, hidden_states
from flaxmodel.core.precision import PRECISIONS
from flaxmodel.errors import CheckpointError, ConfigError, DataError, ModerationError, OptionError, TokenizerError
from flaxmodel.inference.calibration import AUTO_PRECISION
from flaxmodel.inference.predictor import Classifier, load_classifier
from flaxmodel.inference.shapes import ShapeGrid, pad_batch
from flaxmodel.inference.tokenizer import TextEncoder

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
    "ModerationError",
    "OptionError",
    "ShapeGrid",
    "TextEncoder",
    "TokenizerError",
    "apply",
    "default_model_path",
    "hidden_states",
    "load_checkpoint",
    "load_classifier",
    "minilm_path",
    "pad_batch",
    "recommended_thresholds",
    "save_checkpoint",
]
