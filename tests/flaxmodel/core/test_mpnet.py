"""MPNet's own parts: the relative position buckets, the shared bias, and what its config and weights accept.

Logit parity with transformers on a padded batch (every precision), and the save/load round trip,
run for MPNet with the other architectures (``tests.fixtures.ARCHITECTURES``).
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder as TorchMPNetEncoder

from flaxmodel import CheckpointError, ConfigError, apply, hidden_states, load_checkpoint
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.mpnet import relative_position_buckets
from tests.fixtures import hf_tokenizer
from tests.flaxmodel.core.test_parity import FLOAT32_BOUND, TRUNCATE_AT, hf_batch, torch_logits


@pytest.mark.parametrize("length", [1, 17, 600])
def test_relative_position_buckets_match_transformers(length):
    positions = torch.arange(length)
    # Upstream's relative position is key minus query.
    expected = TorchMPNetEncoder.relative_position_bucket(positions[None, :] - positions[:, None], num_buckets=32)
    np.testing.assert_array_equal(relative_position_buckets(length, 32), expected.numpy())


def test_parity_needs_the_relative_position_bias(tiny_checkpoint):
    folder = tiny_checkpoint("mpnet")
    ids, mask = hf_batch(hf_tokenizer(folder, "mpnet"), TRUNCATE_AT)
    expected = torch_logits(folder, ids, mask)
    checkpoint = load_checkpoint(folder)
    params = {**checkpoint.params, "encoder": dict(checkpoint.params["encoder"])}
    table = params["encoder"]["relative_attention_bias"]["embedding"]
    params["encoder"]["relative_attention_bias"] = {"embedding": np.zeros_like(table)}
    ours = np.asarray(apply(params, ids, mask, config=checkpoint.config))
    assert np.abs(ours - expected).max() > 3 * FLOAT32_BOUND


def test_bare_encoder_matches_mpnet_model_and_gets_a_fresh_head(tiny_checkpoint, caplog):
    # An MPNetModel folder, pooler included, as sentence-transformers' checkpoints are.
    folder = tiny_checkpoint("mpnet", head=False)
    assert "pooler.dense.weight" in load_file(str(folder / "model.safetensors"))
    labels = ("toxic", "fine")
    with caplog.at_level(logging.WARNING, logger="flaxmodel.ckpts.checkpoint"):
        checkpoint = load_checkpoint(folder, labels=labels)
    assert checkpoint.fresh_head and "without a classification head" in caplog.text
    assert checkpoint.config.labels == labels
    ids, mask = hf_batch(hf_tokenizer(folder, "mpnet"), TRUNCATE_AT)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long())
    ours = np.asarray(hidden_states(checkpoint.params, ids, mask, config=checkpoint.config))
    real = mask > 0
    assert np.abs(ours - expected.last_hidden_state.numpy())[real].max() < FLOAT32_BOUND
    assert apply(checkpoint.params, ids, mask, config=checkpoint.config).shape == (len(ids), len(labels))


def test_an_unexpected_or_missing_tensor_is_named(tiny_checkpoint, tmp_path):
    folder = shutil.copytree(tiny_checkpoint("mpnet"), tmp_path / "model")
    path = str(folder / "model.safetensors")
    tensors = dict(load_file(path))
    tensors["mpnet.encoder.layer.0.attention.attn.extra.weight"] = np.zeros((2, 2), np.float32)
    del tensors["mpnet.encoder.relative_attention_bias.weight"]
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(folder)
    assert "missing tensors: ['mpnet.encoder.relative_attention_bias.weight']" in str(caught.value)
    assert "unexpected tensors: ['mpnet.encoder.layer.0.attention.attn.extra.weight']" in str(caught.value)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"pad_token_id": 0}, "pad_token_id 0 is not supported for mpnet"),
        ({"relative_attention_num_buckets": 64}, "relative_attention_num_buckets 64 is not supported"),
    ],
)
def test_config_values_transformers_ignores_are_refused(change, reason):
    raw = {"model_type": "mpnet", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 20}
    config = EncoderConfig.from_hf_dict(raw)
    assert (config.position_offset, config.max_length, config.type_vocab_size) == (2, 18, 0)
    assert config.relative_attention_buckets == 32
    with pytest.raises(ConfigError, match=reason):
        EncoderConfig.from_hf_dict({**raw, **change})
