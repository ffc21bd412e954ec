"""Fine-tuning: turning labeled text and a checkpoint folder into a model folder the predictor loads.

Starts from any folder :func:`~flaxmodel.ckpts.loader.load_checkpoint` reads
(default: the MiniLM encoder with a fresh head) and trains either every
parameter or LoRA adapters plus the head and, optionally, the layer norms, with
AdamW under linear warm-up and decay, dropout, gradient clipping and optional
class weights.  ``python -m flaxmodel.training --help`` lists the settings.

Modules, each importing only those before it:

- ``data``: labeled-data readers (CSV, JSONL, Parquet, TweetEval);
- ``functional_hate``, ``functional_contrasts`` and ``functional``: our functional suite's templates
  (attacks; what must not read as hate) and the cases made from them;
- ``mixture_file`` and ``mixture``: data mixtures: the file (sources, label mappings onto our classes,
  weights; ``mixtures/default.toml`` is the default model's), and its rows (partial labels, each epoch's sample);
- ``target_data``: the sources' target-group annotations mapped onto our seven categories, masked where
  a source does not say;
- ``config``: :class:`TrainConfig`, the settings, declared once as flags;
- ``recipe``: named recipes, TOML files of those settings (``recipes/default.toml`` is the default model's);
- ``batches``: the data order of each epoch, class weights, padded batches;
- ``state``: :class:`TrainState` and the pure jitted train and predict steps;
- ``run_dir``: a run directory's settings file, orbax checkpoints, metrics log;
- ``teachers``: distillation targets, the mean probabilities of other models (``--teachers``);
- ``prepare``: data, tokens, model and initial state of a run;
- ``export`` and ``evaluation``: model folders, and the end-of-epoch scores and ``best/`` export;
- ``loop``: :func:`train`, the driver;
- ``adapt_config``, ``adapt_data``, ``adapt_step``, ``adapt_run``, ``adapt_units``, ``adapt_figures``,
  ``adapt_export`` and ``adapt``: adapting a trained model to a platform's own labels (:func:`adapt`, called by
  the ``moderate-adapt`` job): settings, the user's rows, the steps over cached frozen layers, training units
  that survive interruption, weighted figures and thresholds, the folder;
- ``cli`` / ``__main__``: the ``flaxmodel-train`` command line (``--recipe`` plus every setting's flag);
- ``thresholds``, ``targets``, ``export_data`` and ``soup``: stand-alone commands (recommended thresholds
  into a model folder; a target-group head trained on a model folder's frozen encoder, with its
  thresholds; a mixture's validation rows for the evaluation job; the weight average of several runs
  as one model folder), imported by nothing here.

Its libraries (optax, orbax-checkpoint, tqdm) are the ``[train]`` extra; nothing
outside this package imports them, or it.
"""

from flaxmodel.training.adapt import AdaptOutcome, adapt
from flaxmodel.training.adapt_config import AdaptConfig
from flaxmodel.training.cli import build_parser, main
from flaxmodel.training.config import TrainConfig
from flaxmodel.training.data import LABELED_FORMATS, LabeledData, read_labeled
from flaxmodel.training.loop import TrainResult, train
from flaxmodel.training.state import TrainState, train_step

__all__ = [
    "AdaptConfig",
    "AdaptOutcome",
    "LABELED_FORMATS",
    "LabeledData",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "adapt",
    "build_parser",
    "main",
    "read_labeled",
    "train",
    "train_step",
]
