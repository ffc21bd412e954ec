"""The settings of one adapting run (``moderate-adapt``), declared once as dataclass fields that are its flags.

Adapting starts from a trained model folder and the user's rows; what it
trains, how it selects and what it writes are :mod:`flaxmodel.training.adapt`'s
job.  :meth:`AdaptConfig.validate` rejects settings that cannot work before any
data is read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from flaxmodel.ckpts import files
from flaxmodel.ckpts.default_model import BUNDLED_MODELS, model_folder
from flaxmodel.errors import ConfigError
from flaxmodel.flags import flag
from flaxmodel.training.data import LABELED_FORMATS


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    """One adapting run; written beside its work so an interrupted run resumes only with the same settings."""

    output: str = flag(help="Model folder to write (local or gs://); both jobs then run it with --model DIR.")
    model: str = flag("default", "Model to start from: a bundled model's name (default, large), a folder or gs:// path.")
    train: str | None = flag(None, "Labeled rows: CSV, TSV, JSONL or Parquet files (glob or comma-separated list).")
    reviewed: str | None = flag(
        None,
        "Review-sample files (review-*.parquet of a run with --review_sample, or CSV exports) with human_label "
        "filled in; unreviewed rows are skipped and each reviewed row weighs by its stratum's inclusion probability.",
    )
    label_map: str = flag(
        "",
        "Your label names onto the model's classes, e.g. 'offensive=hate|offensive,not=neither' (a label may allow "
        "several classes); empty: your labels are the model's own names.",
    )
    new_head: tuple[str, ...] = flag(
        (), "A fresh head with these classes (e.g. spam,scam,ok) for a taxonomy that does not map onto the model's."
    )
    unlabeled: str | None = flag(
        None,
        "Text you have but did not label (e.g. a run's labels-*.parquet written with --keep_text): the adapted model "
        "keeps the starting model's scores on it.",
    )
    precision_target: float = flag(0.8, "Precision the recommended flag thresholds aim at on your held-out rows.")
    benign_label: str = flag("neither", "The model's class that is not harmful (not thresholded, not a flag).")
    text_field: str = flag("text", "Text column or JSON field.")
    label_field: str = flag("label", "Label column or JSON field of --train rows.")
    target_field: str | None = flag(
        None,
        "Column of the target groups each row attacks, joined by | (e.g. race|religion; empty: none). Rows that "
        "carry them re-fit the model's target-group head. Default: human_targets in --reviewed files, targets in "
        "--train files; a file without the column keeps the starting head.",
    )
    format: str = flag("auto", "Format of --train files; auto: from the extension.", choices=LABELED_FORMATS)
    layers: int = flag(2, "Top encoder layers that adapt (LoRA); the layers below keep the starting model's weights.")
    lora_rank: int = flag(8, "LoRA rank of the adapted layers.")
    learning_rates: tuple[float, ...] = flag((3e-4, 1e-3), "Peak learning rates to select from on held-out rows.")
    epochs: int = flag(4, "Most passes over the rows; the held-out rows choose the best epoch.")
    batch_size: int = flag(32, "Rows per step.")
    max_length: int = flag(64, "Tokens per text, special tokens included.")
    distill_weight: float = flag(
        1.0, "Weight of keeping the starting model's scores where your labels do not decide, target groups "
        "included (0: labels only)."
    )
    held_out: float = flag(0.2, "Share of your rows held out to select, set thresholds and report on.")
    folds: int = flag(5, "Under 300 rows: folds of cross-validation instead of one held-out share.")
    max_unlabeled: int = flag(2000, "Most --unlabeled texts used (a seeded sample beyond it).")
    anchors: int = flag(
        400,
        "Cases of the project's own functional suite (its training templates) on which the adapted model keeps the "
        "starting model's scores, beside --unlabeled: what your rows do not speak of stays as it was (0: none).",
    )
    seed: int = flag(0, "Seed of the split, the data order, dropout and fresh parameters.")
    compilation_cache_dir: str | None = flag(
        None, "Persistent XLA compilation cache (a local folder): a later run with the same shapes skips compiling."
    )

    def __post_init__(self) -> None:
        # The flag parser hands lists over as strings.
        try:
            rates = tuple(float(r) for r in self.learning_rates)
        except ValueError:
            raise ConfigError(f"--learning_rates must be numbers, got {','.join(map(str, self.learning_rates))}") from None
        object.__setattr__(self, "learning_rates", rates)

    def validate(self) -> None:
        """Fails fast, before any data is read, on settings that cannot work.

        Raises:
          ConfigError: naming the flag at fault.
        """
        if (self.train is None) == (self.reviewed is None):
            raise ConfigError("give either --train (labeled rows) or --reviewed (a reviewed review sample)")
        folder = model_folder(self.model)
        if not files.is_remote(folder) and not os.path.isdir(folder):
            raise ConfigError(f"--model {self.model}: no such model folder, nor a bundled model ({', '.join(BUNDLED_MODELS)})")
        if self.new_head and self.label_map:
            raise ConfigError("--new_head names its own classes: your labels must be those names, so drop --label_map")
        if len(set(self.new_head)) != len(self.new_head) or (self.new_head and len(self.new_head) < 2):
            raise ConfigError(f"--new_head needs at least two distinct class names, got {','.join(self.new_head)}")
        if self.anchors < 0:
            raise ConfigError(f"--anchors must be >= 0, got {self.anchors}")
        for name in ("layers", "lora_rank", "epochs", "batch_size", "folds", "max_unlabeled"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.folds < 2:
            raise ConfigError(f"--folds must be at least 2, got {self.folds}")
        if not 0 < self.precision_target <= 1:
            raise ConfigError(f"--precision_target must be in (0, 1], got {self.precision_target}")
        if not 0 < self.held_out < 1:
            raise ConfigError(f"--held_out must be in (0, 1), got {self.held_out}")
        if not self.learning_rates or min(self.learning_rates) <= 0:
            raise ConfigError(f"--learning_rates must be positive, got {','.join(map(str, self.learning_rates))}")
        if self.distill_weight < 0:
            raise ConfigError(f"--distill_weight must be >= 0, got {self.distill_weight}")
        if self.max_length < 8:
            raise ConfigError(f"--max_length must leave room for special tokens and text, got {self.max_length}")
        if self.label_field == self.text_field:
            raise ConfigError("--label_field must name a field other than --text_field")

    def to_json(self) -> dict[str, Any]:
        """The settings as the run's work folder records them (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
