"""Model configuration: the checkpoint's ``config.json`` as a frozen dataclass.

Hugging Face spells the same hyper-parameters differently per architecture
(``num_hidden_layers`` for BERT, ``n_layers`` for DistilBERT, ...).  This module
reads any supported ``config.json`` into one :class:`EncoderConfig`, validates it
(unsupported architecture, label count disagreeing with ``id2label``), and writes
it back out in the architecture's own spelling when a model is exported.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from flaxmodel.errors import ConfigError

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"

# model_type -> architecture family whose weight names and head we implement.
ARCHITECTURE_OF_MODEL_TYPE = {
    "bert": "bert",
    "roberta": "roberta",
    "xlm-roberta": "roberta",
    "distilbert": "distilbert",
    "mpnet": "mpnet",
}

_CLASS_PREFIX = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta"}
# Architectures whose position ids start after the padding index, as RoBERTa's do.
_PADDING_OFFSET_POSITIONS = ("roberta", "mpnet")
# transformers' MPNet hard-codes both: padding index 1 for position ids, and 32 buckets when it
# computes the relative position bias (whatever relative_attention_num_buckets says).
MPNET_PADDING_INDEX = 1
MPNET_RELATIVE_BUCKETS = 32


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Hyper-parameters of a post-layer-norm transformer encoder and its classifier head."""

    model_type: str
    architecture: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float
    max_position_embeddings: int
    type_vocab_size: int
    pad_token_id: int
    hidden_dropout: float
    attention_dropout: float
    classifier_dropout: float
    initializer_range: float
    labels: tuple[str, ...]
    problem_type: str = SINGLE_LABEL
    # Buckets of the relative position bias shared by all layers (MPNet); 0 for the others.
    relative_attention_buckets: int = 0
    # Categories of the optional multi-label target-group head (its own files, not config.json), and the
    # width of its hidden layer; none: the model has no such head.
    targets: tuple[str, ...] = ()
    target_hidden_size: int = 0

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def num_outputs(self) -> int:
        """Width of the model's output: the class logits, then one per target category."""
        return len(self.labels) + len(self.targets)

    @property
    def position_offset(self) -> int:
        """First usable position id: RoBERTa and MPNet reserve ``pad_token_id + 1`` slots."""
        return self.pad_token_id + 1 if self.architecture in _PADDING_OFFSET_POSITIONS else 0

    @property
    def max_length(self) -> int:
        """Longest sequence (special tokens included) the position table can embed."""
        return self.max_position_embeddings - self.position_offset

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    def with_labels(self, labels: tuple[str, ...], problem_type: str | None = None) -> "EncoderConfig":
        return dataclasses.replace(
            self, labels=tuple(labels), problem_type=problem_type or self.problem_type
        )

    def with_targets(self, targets: tuple[str, ...] = (), hidden_size: int = 0) -> "EncoderConfig":
        """This config with a target-group head over ``targets`` (none: without one)."""
        if len(set(targets)) != len(targets):
            raise ConfigError(f"target categories must be distinct, got {list(targets)}")
        if targets and hidden_size <= 0:
            raise ConfigError(f"a target head needs a positive hidden size, got {hidden_size}")
        return dataclasses.replace(self, targets=tuple(targets), target_hidden_size=hidden_size if targets else 0)

    @classmethod
    def from_hf_dict(cls, cfg: Mapping[str, Any], source: str = "config.json") -> "EncoderConfig":
        """Builds the config from a Hugging Face ``config.json`` mapping."""
        model_type = cfg.get("model_type")
        if model_type not in ARCHITECTURE_OF_MODEL_TYPE:
            raise ConfigError(
                f"{source}: unsupported model_type {model_type!r}; supported: "
                f"{sorted(ARCHITECTURE_OF_MODEL_TYPE)}"
            )
        architecture = ARCHITECTURE_OF_MODEL_TYPE[model_type]
        try:
            fields = _FIELD_READERS.get(architecture, _bert_fields)(cfg)
        except KeyError as missing:
            raise ConfigError(f"{source}: missing required key {missing}") from None
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        if fields["hidden_size"] % fields["num_heads"]:
            raise ConfigError(
                f"{source}: hidden size {fields['hidden_size']} is not a multiple of "
                f"the number of attention heads {fields['num_heads']}"
            )
        labels = _labels(cfg, source)
        problem_type = cfg.get("problem_type") or SINGLE_LABEL
        if problem_type not in (SINGLE_LABEL, MULTI_LABEL):
            raise ConfigError(
                f"{source}: problem_type {problem_type!r} is not a classification problem; "
                f"use {SINGLE_LABEL!r} or {MULTI_LABEL!r}"
            )
        return cls(
            model_type=model_type,
            architecture=architecture,
            labels=labels,
            problem_type=problem_type,
            initializer_range=float(cfg.get("initializer_range", 0.02)),
            **fields,
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """The config in the architecture's own Hugging Face spelling."""
        common = {
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "pad_token_id": self.pad_token_id,
            "initializer_range": self.initializer_range,
            "id2label": {str(i): name for i, name in enumerate(self.labels)},
            "label2id": {name: i for i, name in enumerate(self.labels)},
            "problem_type": self.problem_type,
        }
        return {**_architecture_fields(self), **common}


def _architecture_fields(config: EncoderConfig) -> dict[str, Any]:
    """The hyper-parameters in the architecture's own Hugging Face names."""
    if config.architecture == "distilbert":
        return {
            "architectures": ["DistilBertForSequenceClassification"],
            "dim": config.hidden_size,
            "n_layers": config.num_layers,
            "n_heads": config.num_heads,
            "hidden_dim": config.intermediate_size,
            "activation": config.hidden_act,
            "dropout": config.hidden_dropout,
            "attention_dropout": config.attention_dropout,
            "seq_classif_dropout": config.classifier_dropout,
        }
    bert_spelling = {
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": config.hidden_act,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_dropout_prob": config.hidden_dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
    }
    if config.architecture == "mpnet":
        # MPNet has no token types, and its head's dropout is the hidden dropout.
        return {
            "architectures": ["MPNetForSequenceClassification"],
            **bert_spelling,
            "relative_attention_num_buckets": config.relative_attention_buckets,
        }
    return {
        "architectures": [_CLASS_PREFIX[config.model_type] + "ForSequenceClassification"],
        **bert_spelling,
        "type_vocab_size": config.type_vocab_size,
        "classifier_dropout": config.classifier_dropout,
        "position_embedding_type": "absolute",
    }


def _bert_fields(cfg: Mapping[str, Any]) -> dict[str, Any]:
    position_type = cfg.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ConfigError(f"position_embedding_type {position_type!r} is not supported (only 'absolute')")
    hidden_dropout = float(cfg.get("hidden_dropout_prob", 0.1))
    classifier_dropout = cfg.get("classifier_dropout")
    return {
        "vocab_size": int(cfg["vocab_size"]),
        "hidden_size": int(cfg["hidden_size"]),
        "num_layers": int(cfg["num_hidden_layers"]),
        "num_heads": int(cfg["num_attention_heads"]),
        "intermediate_size": int(cfg["intermediate_size"]),
        "hidden_act": str(cfg.get("hidden_act", "gelu")),
        "layer_norm_eps": float(cfg.get("layer_norm_eps", 1e-12)),
        "max_position_embeddings": int(cfg["max_position_embeddings"]),
        "type_vocab_size": int(cfg.get("type_vocab_size", 2)),
        "pad_token_id": int(cfg.get("pad_token_id", 0) or 0),
        "hidden_dropout": hidden_dropout,
        "attention_dropout": float(cfg.get("attention_probs_dropout_prob", 0.1)),
        "classifier_dropout": hidden_dropout if classifier_dropout is None else float(classifier_dropout),
    }


def _distilbert_fields(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "vocab_size": int(cfg["vocab_size"]),
        "hidden_size": int(cfg["dim"]),
        "num_layers": int(cfg["n_layers"]),
        "num_heads": int(cfg["n_heads"]),
        "intermediate_size": int(cfg["hidden_dim"]),
        "hidden_act": str(cfg.get("activation", "gelu")),
        # DistilBERT hard-codes its layer-norm epsilon upstream instead of configuring it.
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": int(cfg["max_position_embeddings"]),
        "type_vocab_size": 0,
        "pad_token_id": int(cfg.get("pad_token_id", 0) or 0),
        "hidden_dropout": float(cfg.get("dropout", 0.1)),
        "attention_dropout": float(cfg.get("attention_dropout", 0.1)),
        "classifier_dropout": float(cfg.get("seq_classif_dropout", 0.2)),
    }


def _mpnet_fields(cfg: Mapping[str, Any]) -> dict[str, Any]:
    pad = cfg.get("pad_token_id")
    pad_token_id = MPNET_PADDING_INDEX if pad is None else int(pad)
    if pad_token_id != MPNET_PADDING_INDEX:
        raise ConfigError(
            f"pad_token_id {pad_token_id} is not supported for mpnet: transformers' MPNet derives position ids "
            f"from padding index {MPNET_PADDING_INDEX} whatever the config says; re-tokenize with pad id "
            f"{MPNET_PADDING_INDEX}"
        )
    buckets = int(cfg.get("relative_attention_num_buckets", MPNET_RELATIVE_BUCKETS))
    if buckets != MPNET_RELATIVE_BUCKETS:
        raise ConfigError(
            f"relative_attention_num_buckets {buckets} is not supported: transformers' MPNet always computes "
            f"the relative position bias with {MPNET_RELATIVE_BUCKETS} buckets, so no other value has a "
            f"reference behaviour; use {MPNET_RELATIVE_BUCKETS}"
        )
    # BERT's spelling, without token types, with MPNet's padding index; its head drops out as its layers do.
    return {
        **_bert_fields(cfg),
        "type_vocab_size": 0,
        "pad_token_id": pad_token_id,
        "classifier_dropout": float(cfg.get("hidden_dropout_prob", 0.1)),
        "relative_attention_buckets": buckets,
    }


_FIELD_READERS = {"distilbert": _distilbert_fields, "mpnet": _mpnet_fields}


def _labels(cfg: Mapping[str, Any], source: str) -> tuple[str, ...]:
    id2label = cfg.get("id2label")
    num_labels = cfg.get("num_labels")
    if id2label is None:
        # transformers' PretrainedConfig default: two generic labels.
        count = 2 if num_labels is None else int(num_labels)
        return tuple(f"LABEL_{i}" for i in range(count))
    try:
        by_id = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError, AttributeError):
        raise ConfigError(f"{source}: id2label must map integer ids to names, got {id2label!r}") from None
    if sorted(by_id) != list(range(len(by_id))):
        raise ConfigError(f"{source}: id2label ids must be 0..{len(by_id) - 1}, got {sorted(by_id)}")
    if num_labels is not None and int(num_labels) != len(by_id):
        raise ConfigError(
            f"{source}: num_labels is {num_labels} but id2label names {len(by_id)} labels; "
            "make them agree"
        )
    if len(set(by_id.values())) != len(by_id):
        raise ConfigError(f"{source}: id2label has duplicate names: {by_id}")
    return tuple(by_id[i] for i in range(len(by_id)))
