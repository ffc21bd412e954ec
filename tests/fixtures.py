"""Tiny Hugging Face checkpoint folders written by transformers itself, for tests.

:func:`make_tiny_checkpoint` builds a randomly initialised ``*ForSequenceClassification``
(or a bare encoder) of a given model type with PyTorch transformers, saves it the way
a user's checkpoint folder looks (``config.json``; ``model.safetensors``, sharded
safetensors or a ``pytorch_model.bin``; ``tokenizer.json`` plus the legacy vocabulary
files) and returns the folder.  Every parameter is drawn at random, biases and
layer-norm parameters included, so a mix-up of any two tensors changes the output.
The same arguments give the same weights, so a folder can be rebuilt in another
format and compared.  torch is a test-only dependency; runtime code never sees it.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import socket
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer
from tokenizers.processors import RobertaProcessing

from flaxmodel.core.config import EncoderConfig

LABELS = ("hate", "offensive", "neither")

# What the tiny tokenizers are built from, and the texts tests classify.
SHORT_TEXTS = (
    "ok",
    "You are great!",
    "I hate this so much",
    "what a stupid idea, honestly",
    "Thanks for sharing, this is lovely :)",
    "nobody asked for your opinion",
    "the weather is nice today",
    "go away, you are not welcome here",
)
LONG_TEXTS = (
    " ".join(["this is a long rambling post that keeps going and going"] * 8),
    " ".join(["You are great and I love it but what a stupid idea honestly"] * 7),
)
TEXTS = SHORT_TEXTS + LONG_TEXTS

HIDDEN_SIZE = 32
NUM_LAYERS = 2
NUM_HEADS = 4
INTERMEDIATE_SIZE = 64
# Positions the tiny models embed; texts longer than this get truncated.
MAX_LENGTH = 48
# Standard deviation of the random parameters: large enough that outputs depend
# visibly on every tensor, activation and epsilon, small enough to stay well conditioned.
PARAM_STD = 0.2

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

# Per model type: the config variant each tiny model exercises.
VARIANTS: dict[str, dict[str, Any]] = {
    "bert": {"hidden_act": "gelu", "layer_norm_eps": 1e-12},
    "roberta": {"hidden_act": "gelu_new", "layer_norm_eps": 1e-3},
    "xlm-roberta": {"hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-5},
    "distilbert": {"activation": "gelu"},
    "mpnet": {"hidden_act": "gelu", "layer_norm_eps": 1e-5},
}
ARCHITECTURES = tuple(VARIANTS)


def uses_wordpiece(architecture: str) -> bool:
    return architecture in ("bert", "distilbert")


def tiny_tokenizer(architecture: str) -> Tokenizer:
    """A WordPiece (BERT, DistilBERT) or byte-level BPE (RoBERTa, MPNet) tokenizer over the sample texts."""
    if uses_wordpiece(architecture):
        words = sorted({w.strip(",.!:)?").lower() for t in TEXTS for w in t.split()} - {""})
        chars = sorted({c for t in TEXTS for c in t.lower() if not c.isspace()})
        vocab = list(BERT_SPECIALS) + chars + ["##" + c for c in chars] + words
        return BertWordPieceTokenizer({t: i for i, t in enumerate(dict.fromkeys(vocab))}, lowercase=True)._tokenizer
    bpe = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True)
    bpe.train_from_iterator(list(TEXTS), vocab_size=400, min_frequency=1, special_tokens=list(ROBERTA_SPECIALS))
    tokenizer = bpe._tokenizer
    tokenizer.post_processor = RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>"))
    )
    return tokenizer


def hf_config(
    architecture: str,
    vocab_size: int,
    labels: Sequence[str],
    problem_type: str | None = None,
    **overrides: Any,
) -> transformers.PretrainedConfig:
    """The transformers config of a tiny model; ``overrides`` replace any field."""
    id2label = {i: name for i, name in enumerate(labels)}
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "id2label": id2label,
        "label2id": {name: i for i, name in id2label.items()},
        "problem_type": problem_type,
    }
    if architecture == "distilbert":
        fields = {
            "dim": HIDDEN_SIZE,
            "n_layers": NUM_LAYERS,
            "n_heads": NUM_HEADS,
            "hidden_dim": INTERMEDIATE_SIZE,
            "max_position_embeddings": MAX_LENGTH,
            "pad_token_id": 0,
        }
    else:
        roberta_like = not uses_wordpiece(architecture)
        fields = {
            "hidden_size": HIDDEN_SIZE,
            "num_hidden_layers": NUM_LAYERS,
            "num_attention_heads": NUM_HEADS,
            "intermediate_size": INTERMEDIATE_SIZE,
            # RoBERTa's and MPNet's positions start after the padding index (pad_token_id + 1).
            "max_position_embeddings": MAX_LENGTH + (2 if roberta_like else 0),
            "pad_token_id": 1 if roberta_like else 0,
        }
        if architecture != "mpnet":  # MPNet has no token types
            fields["type_vocab_size"] = 1 if roberta_like else 2
        if roberta_like:
            fields.update(bos_token_id=0, eos_token_id=2)
    return transformers.AutoConfig.for_model(architecture, **{**fields, **VARIANTS[architecture], **common, **overrides})


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Draws every parameter at random; layer-norm scales around 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator) * PARAM_STD
            is_norm_scale = "norm" in name.lower() and name.endswith("weight")
            param.copy_(1.0 + noise if is_norm_scale else noise)
    return model.eval()


def make_tiny_model(
    architecture: str,
    labels: Sequence[str] = LABELS,
    problem_type: str | None = None,
    *,
    head: bool = True,
    seed: int = 0,
    **overrides: Any,
) -> tuple[torch.nn.Module, Tokenizer]:
    """The torch model (eval mode) and tokenizer that :func:`make_tiny_checkpoint` saves."""
    tokenizer = tiny_tokenizer(architecture)
    config = hf_config(architecture, tokenizer.get_vocab_size(), labels, problem_type, **overrides)
    factory = transformers.AutoModelForSequenceClassification if head else transformers.AutoModel
    torch.manual_seed(seed)
    return randomize(factory.from_config(config), seed), tokenizer


def make_tiny_checkpoint(
    folder: str | pathlib.Path,
    architecture: str,
    labels: Sequence[str] = LABELS,
    safetensors: bool = True,
    problem_type: str | None = None,
    *,
    head: bool = True,
    max_shard_size: str | None = None,
    seed: int = 0,
    **overrides: Any,
) -> pathlib.Path:
    """Writes a tiny random checkpoint folder of ``architecture`` (a transformers model_type).

    ``safetensors=False`` writes ``pytorch_model.bin`` the way transformers'
    ``save_pretrained(safe_serialization=False)`` did (``torch.save`` of the state
    dict); ``max_shard_size`` (e.g. ``"20KB"``) shards the safetensors with an index;
    ``head=False`` saves the bare encoder (``AutoModel``) without a classifier.
    """
    folder = pathlib.Path(folder)
    model, tokenizer = make_tiny_model(architecture, labels, problem_type, head=head, seed=seed, **overrides)
    if safetensors:
        model.save_pretrained(folder, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    else:
        folder.mkdir(parents=True, exist_ok=True)
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    save_tokenizer(tokenizer, folder, architecture)
    return folder


def save_tokenizer(tokenizer: Tokenizer, folder: pathlib.Path, architecture: str) -> None:
    """``tokenizer.json`` and the legacy files (``vocab.txt`` or ``vocab.json`` + ``merges.txt``)."""
    tokenizer.save(str(folder / "tokenizer.json"))
    vocab = tokenizer.get_vocab()
    if uses_wordpiece(architecture):
        (folder / "vocab.txt").write_text("".join(t + "\n" for t in sorted(vocab, key=vocab.get)), encoding="utf-8")
        return
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    lines = [" ".join(m) if isinstance(m, list) else m for m in merges]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(line + "\n" for line in lines), encoding="utf-8")


def hf_tokenizer(folder: str | pathlib.Path, architecture: str) -> transformers.PreTrainedTokenizerFast:
    """transformers' own tokenizer over the folder's ``tokenizer.json``: the reference for ids."""
    if uses_wordpiece(architecture):
        names = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    else:
        names = dict(
            bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>", mask_token="<mask>",
            cls_token="<s>", sep_token="</s>",
        )
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(pathlib.Path(folder) / "tokenizer.json"), **names)


def minilm_shaped_config(labels: Sequence[str] = LABELS) -> EncoderConfig:
    """A config of MiniLM-L6's shape (no weights): batch costs in tests then weigh as the real model's."""
    return EncoderConfig.from_hf_dict(
        {
            "model_type": "bert",
            "vocab_size": 30522,
            "hidden_size": 384,
            "num_hidden_layers": 6,
            "num_attention_heads": 12,
            "intermediate_size": 1536,
            "max_position_embeddings": 512,
            "id2label": {str(i): name for i, name in enumerate(labels)},
        }
    )


TARGET_CATEGORIES = ("race", "religion", "gender")


def add_target_head(
    folder: str | pathlib.Path,
    categories: Sequence[str] = TARGET_CATEGORIES,
    *,
    hidden: int = 8,
    threshold: float = 0.5,
    seed: int = 0,
) -> dict:
    """Writes a random target-group head into a model folder; returns its parameter tree (float32)."""
    from flaxmodel.ckpts.loader import read_model_config
    from flaxmodel.ckpts.target_head import write_target_head

    width = read_model_config(str(folder)).hidden_size
    rng = np.random.default_rng(seed)
    params = {
        "dense": {"kernel": rng.normal(0, 0.5, (width, hidden)).astype(np.float32), "bias": rng.normal(0, 0.1, hidden).astype(np.float32)},
        "out_proj": {
            "kernel": rng.normal(0, 0.5, (hidden, len(categories))).astype(np.float32),
            "bias": rng.normal(0, 0.1, len(categories)).astype(np.float32),
        },
    }
    write_target_head(str(folder), tuple(categories), params, {c: threshold for c in categories}, {"trained_on": "test"})
    return params


@contextlib.contextmanager
def no_network(what: str) -> Iterator[None]:
    """Fails any socket connection made inside: ``what`` must load and run offline."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{what} tried to reach the network")

    original = socket.socket.connect
    socket.socket.connect = refuse
    try:
        yield
    finally:
        socket.socket.connect = original
