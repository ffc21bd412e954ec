"""Flax/JAX text classifiers that load Hugging Face checkpoint folders without torch."""

from flaxmodel.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from flaxmodel.config import ConfigError, EncoderConfig
from flaxmodel.model import apply, hidden_states
from flaxmodel.predictor import Classifier, load_classifier
from flaxmodel.tokenizer import TextEncoder, TokenizerError

__all__ = [
    "CheckpointError",
    "Classifier",
    "ConfigError",
    "EncoderConfig",
    "TextEncoder",
    "TokenizerError",
    "apply",
    "hidden_states",
    "load_checkpoint",
    "load_classifier",
    "save_checkpoint",
]
