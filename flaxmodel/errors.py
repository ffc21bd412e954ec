"""The engine's exception family: every fault a user can fix, under one base the command lines catch.

Each kind of fault has its own class, and every message names the file, flag
or tensor at fault and says what to change.  ``ValueError`` stays a base so
callers that caught the old per-module errors as value errors keep working.
"""

from __future__ import annotations


class ModerationError(ValueError):
    """Base of every error raised for input, configuration or checkpoints the user can fix."""


class ConfigError(ModerationError):
    """A configuration cannot work: a model's ``config.json``, LoRA settings or training settings."""


class CheckpointError(ModerationError):
    """A checkpoint or adapter folder cannot be loaded: missing or corrupt files, tensors, labels."""


class TokenizerError(ModerationError):
    """A tokenizer cannot be built from a model folder's files."""


class DataError(ModerationError):
    """Labeled data cannot be read; the message names the file and rows."""


class OptionError(ModerationError):
    """A command-line flag value that cannot work; the message says which flag and what to change."""
