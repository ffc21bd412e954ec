"""The settings of one training run, declared once: dataclass fields that are also the CLI flags.

Every field of :class:`TrainConfig` is a :func:`flaxmodel.flags.flag`, so the
command line (:mod:`flaxmodel.training.cli`), the help texts and the
``train_config.json`` a run directory records all come from this one
declaration.  :meth:`TrainConfig.validate` rejects settings that cannot work
before any data is read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from flaxmodel.ckpts import files
from flaxmodel.ckpts.default_model import BUNDLED_MODELS, model_folder
from flaxmodel.core.lora import DENSE_MODULES, LoraConfig
from flaxmodel.errors import ConfigError
from flaxmodel.flags import flag
from flaxmodel.inference.predictor import DTYPES
from flaxmodel.inference.preprocessing import Preprocessing
from flaxmodel.training.data import LABELED_FORMATS

# Named class-weighting schemes; anything else must be explicit name=weight pairs.
CLASS_WEIGHTING = ("balanced", "sqrt")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run; written to the run directory so a restart can check it is the same run."""

    output: str = flag(help="Run directory (checkpoints, metrics.jsonl, best/); rerun the same command to resume.")
    train: str | None = flag(None, "Labeled training data: file, glob or comma-separated list (or use --mixture).")
    val: str | None = flag(None, "Validation data (same formats); the best epoch is chosen by its macro F1.")
    mixture: str | None = flag(
        None,
        "Data mixture file (TOML: sources, label mappings, weights; e.g. flaxmodel/training/mixtures/default.toml) "
        "instead of --train/--val/--labels; the best epoch is chosen by the mean score over its sources.",
    )
    data_root: str | None = flag(None, "Folder the mixture's source paths are relative to, e.g. ../shared/data.")
    model: str | None = flag(None, "Checkpoint folder or bundled model name to start from; default: the MiniLM-L6 encoder.")
    labels: tuple[str, ...] | None = flag(None, "Label names in id order, e.g. hate,offensive,neither.")
    text_field: str = flag("text", "Text column or JSON field of CSV, JSONL and Parquet data.")
    label_field: str = flag("label", "Label column or JSON field (label ids or names).")
    format: str = flag("auto", "Data format; auto: from the file extension.", choices=LABELED_FORMATS)
    preprocessing: tuple[str, ...] = flag(
        (),
        "Text preprocessing the trained model declares, applied wherever it scores text (emoji_names: each emoji "
        "replaced by its name; join_spaced_letters: 'v e r m i n' -> 'vermin'; undo_leetspeak: 'k1ll' -> 'kill'); "
        "default: the starting folder's own.",
    )
    epochs: int = flag(3, "Passes over the training data.")
    epoch_share: float = flag(
        1.0,
        "Share of each source's sampled rows one epoch draws (0.5: epochs half as long, each a fresh draw and "
        "validated at its end), so a slow model gets a short schedule or more frequent selection.",
    )
    batch_size: int = flag(32, "Texts per training step.")
    max_length: int = flag(64, "Tokens per text, special tokens included.")
    learning_rate: float = flag(5e-5, "Peak learning rate.")
    warmup_ratio: float = flag(0.06, "Share of the steps spent warming the learning rate up from zero.")
    weight_decay: float = flag(0.01, "AdamW weight decay on kernels, embeddings and adapters.")
    clip_norm: float = flag(1.0, "Global gradient-norm clip.")
    class_weights: str = flag("", "Loss weight per class: 'balanced', 'sqrt' or name=weight pairs; empty: all 1.")
    lora_rank: int = flag(0, "LoRA rank; 0 trains every parameter.")
    lora_alpha: float = flag(16.0, "LoRA alpha; adapters are scaled by alpha / rank.")
    lora_targets: tuple[str, ...] = flag(DENSE_MODULES, "Dense modules that get adapters.")
    train_norms: bool = flag(False, "With LoRA, also train the layer norms.")
    teachers: tuple[str, ...] | None = flag(
        None,
        "Model folders (e.g. earlier runs' best/) whose mean probabilities the student also learns: "
        "distillation of their ensemble into one model of the student's cost.",
    )
    distill_weight: float = flag(
        0.5, "With --teachers: share of the loss that is cross-entropy with the teachers' mean probabilities."
    )
    target_weight: float = flag(
        0.0,
        "With --mixture: weight of a target-group loss beside the class loss (masked binary cross-entropy of a "
        "fresh target head on the rows whose sources annotate targets), so the encoder learns who a text "
        "attacks; the exported model leaves that head out (train the shipped one with "
        "python -m flaxmodel.training.targets).  0: no target loss.",
    )
    dtype: str = flag("float32", "Compute dtype (bfloat16 on accelerators).", choices=sorted(DTYPES))
    seed: int = flag(0, "Seed of the data order, dropout, a fresh head and fresh adapters.")
    save_every: int = flag(200, "Checkpoint every N steps (and at each epoch's end).")
    eval_batch_size: int = flag(64, "Most texts per validation batch.")

    def validate(self) -> None:
        """Fails fast, before any data is read, on settings that cannot work.

        Raises:
          ConfigError: naming the flag at fault.
        """
        Preprocessing(self.preprocessing)  # raises ConfigError naming an unknown step
        self._validate_data()
        for name in ("epochs", "batch_size", "save_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.epoch_share <= 1:
            raise ConfigError(f"--epoch_share must be in (0, 1], got {self.epoch_share}")
        if self.max_length < 3:
            raise ConfigError(f"--max_length must leave room for special tokens and text, got {self.max_length}")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.clip_norm <= 0:
            raise ConfigError("--weight_decay must be >= 0 and --clip_norm > 0")
        # Choices are checked again here: a TrainConfig can be built without the parser.
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.format not in LABELED_FORMATS:
            raise ConfigError(f"--format must be one of {LABELED_FORMATS}, got {self.format!r}")
        if self.lora_rank < 0:
            raise ConfigError(f"--lora_rank must be 0 (full fine-tuning) or positive, got {self.lora_rank}")
        if self.train_norms and not self.lora_rank:
            raise ConfigError(
                "--train_norms only applies to LoRA (--lora_rank > 0): full fine-tuning trains them anyway"
            )
        folder = model_folder(self.model) if self.model is not None else None
        if folder is not None and not files.is_remote(folder) and not os.path.isdir(folder):
            raise ConfigError(f"--model {self.model}: no such checkpoint folder, nor a bundled model ({', '.join(BUNDLED_MODELS)})")
        if self.class_weights and self.class_weights not in CLASS_WEIGHTING:
            parse_class_weights(self.class_weights)
        self._validate_teachers()

    def _validate_teachers(self) -> None:
        if not 0 <= self.distill_weight <= 1:
            raise ConfigError(f"--distill_weight must be in [0, 1], got {self.distill_weight}")
        for folder in self.teachers or ():
            if not files.is_remote(folder) and not os.path.isdir(folder):
                raise ConfigError(f"--teachers {folder}: no such model folder")
        if self.target_weight < 0:
            raise ConfigError(f"--target_weight must be >= 0, got {self.target_weight}")
        if self.target_weight and self.mixture is None:
            raise ConfigError("--target_weight needs --mixture: the target annotations come from its sources")

    def _validate_data(self) -> None:
        if (self.train is None) == (self.mixture is None):
            raise ConfigError("give either --train (with optional --val) or --mixture, not both or neither")
        if self.mixture is None:
            if self.data_root is not None:
                raise ConfigError("--data_root only applies to --mixture")
            return
        if self.val is not None or self.labels is not None:
            raise ConfigError("--mixture declares its own validation splits and classes: drop --val and --labels")
        if not os.path.isfile(self.mixture):
            raise ConfigError(f"--mixture {self.mixture}: no such file")
        if self.data_root is None or not os.path.isdir(self.data_root):
            raise ConfigError(f"--mixture needs --data_root, the folder its paths are relative to (got {self.data_root})")

    @property
    def lora(self) -> LoraConfig | None:
        """The LoRA settings, or None for full fine-tuning."""
        if not self.lora_rank:
            return None
        return LoraConfig(rank=self.lora_rank, alpha=self.lora_alpha, targets=tuple(self.lora_targets))

    def to_json(self) -> dict[str, Any]:
        """The settings as ``train_config.json`` stores them (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def parse_class_weights(spec: str) -> dict[str, float]:
    """Explicit class weights ``name=weight,...`` as a mapping.

    Args:
      spec: e.g. ``"hate=4,offensive=1"``; every weight must be positive.

    Returns:
      Label name -> weight.

    Raises:
      ConfigError: when ``spec`` is not such a list.
    """
    weights = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip() or weights.get(name.strip(), 0) <= 0:
            raise ConfigError(
                f"--class_weights {spec!r}: use 'balanced', 'sqrt' or positive name=weight pairs, "
                "e.g. hate=4,offensive=1"
            )
    return weights
