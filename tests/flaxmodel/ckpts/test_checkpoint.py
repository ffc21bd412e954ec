"""Loading checkpoint folders: every weight format gives the same parameters, and every
broken folder fails before inference with an exception naming what is wrong and where.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import zipfile

import jax
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from flaxmodel import (
    CheckpointError,
    ConfigError,
    TokenizerError,
    hidden_states,
    load_checkpoint,
    load_classifier,
    save_checkpoint,
)
from flaxmodel.ckpts.checkpoint import read_state_dict
from tests.fixtures import ARCHITECTURES, BERT_SPECIALS, LABELS, hf_config, make_tiny_model, randomize, tiny_tokenizer

ENCODER_KEY = "bert.encoder.layer.1.intermediate.dense.weight"


@pytest.fixture
def bert_copy(tiny_checkpoint, tmp_path):
    """A writable copy of the tiny BERT classifier folder, to break."""
    return shutil.copytree(tiny_checkpoint("bert"), tmp_path / "model")


def edit_config(folder, **changes) -> None:
    """Sets keys of config.json; a value of None removes the key."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps({k: v for k, v in config.items() if v is not None}))


def edit_tensors(folder, edit) -> None:
    path = str(folder / "model.safetensors")
    tensors = dict(load_file(path))
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def assert_same_params(a, b) -> None:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, a, b)))


def write_torch_zip(path, payload: bytes) -> None:
    """A file laid out like ``torch.save`` writes it, around an arbitrary pickle."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert"])
def test_bin_and_sharded_safetensors_load_the_same_parameters(tiny_checkpoint, architecture):
    reference = load_checkpoint(tiny_checkpoint(architecture)).params
    sharded = tiny_checkpoint(architecture, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").exists()
    assert not (sharded / "model.safetensors").exists()
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    assert_same_params(load_checkpoint(sharded).params, reference)
    assert_same_params(load_checkpoint(tiny_checkpoint(architecture, safetensors=False)).params, reference)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saved_checkpoint_reloads_here_and_in_transformers(tiny_checkpoint, tmp_path, architecture):
    source = tiny_checkpoint(architecture)
    loaded = load_checkpoint(source)
    save_checkpoint(str(tmp_path), loaded.params, loaded.config)
    reloaded = load_checkpoint(tmp_path)
    assert reloaded.config == loaded.config
    assert_same_params(reloaded.params, loaded.params)
    ids = torch.randint(5, 60, (2, 12))
    with torch.no_grad():
        expected = transformers.AutoModelForSequenceClassification.from_pretrained(source)(input_ids=ids).logits
        exported = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path)(input_ids=ids).logits
    torch.testing.assert_close(exported, expected, rtol=0, atol=0)


@pytest.mark.parametrize("safetensors", [True, False], ids=["safetensors", "bin"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights_are_read_exactly(tmp_path, safetensors, dtype):
    model, _ = make_tiny_model("distilbert")
    model = model.to(dtype)
    if safetensors:
        model.save_pretrained(tmp_path)
    else:
        torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    state = read_state_dict(str(tmp_path))
    expected = {k: v.float().numpy() for k, v in model.state_dict().items()}
    assert state.keys() == expected.keys()
    for name, value in state.items():
        np.testing.assert_array_equal(np.asarray(value, dtype=np.float32), expected[name], err_msg=name)


def test_bin_tensors_sharing_a_storage_are_read_exactly(tmp_path):
    # torch.save keeps views (transposes, slices, tied weights) as strides into one storage.
    base = torch.randn(4, 6)
    tensors = {"t": base.t(), "slice": base[1:3, 2:5], "tied": base, "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 3)}
    torch.save(tensors, tmp_path / "pytorch_model.bin")
    state = read_state_dict(str(tmp_path))
    for name, value in tensors.items():
        np.testing.assert_array_equal(state[name], value.numpy(), err_msg=name)


def test_base_encoder_gets_a_fresh_head_with_a_warning(tiny_checkpoint, caplog):
    folder = tiny_checkpoint("roberta", head=False)
    labels = ("toxic", "fine")
    with caplog.at_level(logging.WARNING, logger="flaxmodel.ckpts.checkpoint"):
        classifier = load_classifier(folder, labels=labels)
    assert any("without a classification head" in r.getMessage() and str(folder) in r.getMessage() for r in caplog.records)
    assert classifier.labels == labels
    assert load_checkpoint(folder, labels=labels).fresh_head
    assert classifier.predict_proba(["hello there"]).shape == (1, len(labels))


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_masked_lm_checkpoint_keeps_its_encoder_and_drops_its_pretraining_head(tmp_path, architecture, caplog):
    tokenizer = tiny_tokenizer(architecture)
    config = hf_config(architecture, tokenizer.get_vocab_size(), LABELS)
    torch.manual_seed(0)
    model = randomize(transformers.AutoModelForMaskedLM.from_config(config), seed=0)
    model.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="flaxmodel.ckpts.checkpoint"):
        checkpoint = load_checkpoint(tmp_path, labels=("toxic", "fine"))
    assert checkpoint.fresh_head and "without a classification head" in caplog.text
    ids = torch.randint(len(BERT_SPECIALS), tokenizer.get_vocab_size(), (2, 12))
    with torch.no_grad():
        expected = model.base_model(input_ids=ids).last_hidden_state.numpy()
    ours = hidden_states(checkpoint.params, ids.numpy(), np.ones((2, 12), np.int32), config=checkpoint.config)
    np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4)


def test_labels_that_disagree_with_the_head_are_refused(tiny_checkpoint):
    with pytest.raises(CheckpointError, match=r"head has labels \['hate', 'offensive', 'neither'\]"):
        load_checkpoint(tiny_checkpoint("bert"), labels=("a", "b", "c"))


def test_unsupported_model_type(bert_copy):
    edit_config(bert_copy, model_type="gpt2")
    with pytest.raises(ConfigError, match=r"config\.json: unsupported model_type 'gpt2'"):
        load_classifier(bert_copy)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"hidden_act": "mish"}, "unsupported activation function 'mish'"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key' is not supported"),
        ({"num_hidden_layers": None}, "missing required key 'num_hidden_layers'"),
    ],
    ids=["activation", "position-embedding", "missing-key"],
)
def test_unusable_config_values(bert_copy, change, reason):
    edit_config(bert_copy, **change)
    with pytest.raises(ConfigError, match=rf"{bert_copy}/config\.json: {reason}"):
        load_classifier(bert_copy)


def test_missing_config(bert_copy):
    (bert_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match=rf"{bert_copy}: no config\.json"):
        load_classifier(bert_copy)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "nowhere")


def test_missing_weights(bert_copy):
    (bert_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=rf"{bert_copy}: no weights; expected one of model\.safetensors"):
        load_classifier(bert_copy)


def test_missing_tokenizer(bert_copy):
    (bert_copy / "tokenizer.json").unlink()
    (bert_copy / "vocab.txt").unlink()
    with pytest.raises(TokenizerError, match=rf"{bert_copy}: no tokenizer"):
        load_classifier(bert_copy)


def test_num_labels_disagreeing_with_id2label(bert_copy):
    edit_config(bert_copy, num_labels=5)
    with pytest.raises(ConfigError, match="num_labels is 5 but id2label names 3 labels"):
        load_classifier(bert_copy)


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda data: data[: len(data) // 2], r"tensor '[\w.]+' does not fit the file"),
        (lambda data: data[:5], "shorter than its header"),
        (lambda data: data[:8] + b"#" * 40 + data[48:], "header is not JSON"),
        (lambda data: (10**12).to_bytes(8, "little") + data[8:], "header length beyond end of file"),
    ],
    ids=["truncated", "truncated-header", "garbage-header", "header-length"],
)
def test_corrupt_safetensors(bert_copy, corrupt, reason):
    path = bert_copy / "model.safetensors"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(CheckpointError, match=rf"{path}: corrupt safetensors file \({reason}"):
        load_classifier(bert_copy)


def test_missing_tensor_is_named(bert_copy):
    edit_tensors(bert_copy, lambda t: t.pop(ENCODER_KEY))
    with pytest.raises(CheckpointError, match=rf"{bert_copy}: .*missing tensors: \['{ENCODER_KEY}'\]"):
        load_classifier(bert_copy)


def test_unexpected_tensor_is_named(bert_copy):
    extra = "bert.encoder.layer.0.attention.self.rotary.weight"
    edit_tensors(bert_copy, lambda t: t.update({extra: np.zeros((4, 4), np.float32)}))
    with pytest.raises(CheckpointError, match=rf"unexpected tensors: \['{extra}'\]"):
        load_classifier(bert_copy)


def test_mis_shaped_tensor_is_named(bert_copy):
    edit_tensors(bert_copy, lambda t: t.update({ENCODER_KEY: np.zeros((64, 31), np.float32)}))
    with pytest.raises(CheckpointError, match=rf"mis-shaped tensors: {ENCODER_KEY}: checkpoint \(31, 64\), model expects \(32, 64\)"):
        load_classifier(bert_copy)


class _RunsCommand:
    """Unpickling this object would run a shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_bin_with_a_code_executing_global_is_refused(bert_copy, tmp_path):
    marker = tmp_path / "pwned"
    (bert_copy / "model.safetensors").unlink()
    bin_path = bert_copy / "pytorch_model.bin"
    write_torch_zip(bin_path, pickle.dumps({"bert.pooler.dense.weight": _RunsCommand(f"touch {marker}")}, protocol=2))
    with pytest.raises(CheckpointError, match=rf"{bin_path}: refusing to load {os.system.__module__}\.system"):
        load_classifier(bert_copy)
    assert not marker.exists()


def test_bin_with_a_truncated_storage_is_refused(tiny_checkpoint, tmp_path):
    source = tiny_checkpoint("bert", safetensors=False)
    folder = shutil.copytree(source, tmp_path / "model")
    bin_path = folder / "pytorch_model.bin"
    with zipfile.ZipFile(source / "pytorch_model.bin") as original, zipfile.ZipFile(bin_path, "w") as damaged:
        for name in original.namelist():
            data = original.read(name)
            damaged.writestr(name, data[:16] if name.endswith("/data/0") else data)
    with pytest.raises(CheckpointError, match=rf"{bin_path}: .*the file is truncated or corrupt"):
        load_classifier(folder)


def test_bin_that_is_not_a_zip_is_refused(bert_copy):
    (bert_copy / "model.safetensors").unlink()
    (bert_copy / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(CheckpointError, match="not a zip-format PyTorch file"):
        load_classifier(bert_copy)

