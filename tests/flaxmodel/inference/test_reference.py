"""A model's reference: made from its folder's files alone, the same for the same files, and enough for
every step that needs the model before its weights load."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from flaxmodel import CheckpointError, ModelRef, default_model_path, resolve_model, write_thresholds
from flaxmodel.ckpts import checkpoint


def test_a_reference_reads_config_tokenizer_hash_and_thresholds_without_parsing_weights(
    tiny_checkpoint, tmp_path, monkeypatch
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint("bert"), folder)
    write_thresholds(str(folder), {"hate": 0.7}, {})
    monkeypatch.setattr(checkpoint, "parse_safetensors", lambda *a: pytest.fail("weights were parsed"))
    ref = resolve_model(str(folder), max_length=24)
    assert ref.name == "model" and ref.path == str(folder)
    assert ref.labels == ref.config.labels and ref.max_length == 24
    assert ref.content_length == 24 - 2  # [CLS] and [SEP]
    assert ref.thresholds == (("hate", 0.7),)
    assert ref.identity("bfloat16") == f"model@{ref.weights_hash}:bfloat16"
    assert pickle.loads(pickle.dumps(ref)) == ref  # it travels to every worker with the graph


def test_the_weights_hash_follows_the_weight_files(tiny_checkpoint, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint("bert"), folder)
    before = resolve_model(str(folder)).weights_hash
    assert resolve_model(str(folder)).weights_hash == before
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + np.float32(1e-3)
    save_file(tensors, weights)
    assert resolve_model(str(folder)).weights_hash != before


def test_the_default_models_reference_names_its_adapter_and_base(monkeypatch):
    ref = resolve_model()
    assert ref.path == default_model_path()
    assert ref.thresholds  # the default model ships recommended thresholds
    assert len(ref.weights_hash) == 16


def test_a_bundled_models_name_selects_it_unless_a_folder_of_that_name_is_here(tiny_checkpoint, tmp_path, monkeypatch):
    assert resolve_model("default") == resolve_model()
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_checkpoint("bert"), tmp_path / "default")
    assert resolve_model("default").path == "default"
    with pytest.raises(CheckpointError, match="elsewhere: checkpoint folder does not exist"):
        resolve_model("elsewhere")


def test_a_position_table_caps_the_window_length(tiny_checkpoint):
    ref = resolve_model(tiny_checkpoint("bert"), max_length=10**6)
    assert ref.max_length == ref.config.max_length


def test_a_ref_resolves_to_itself_and_a_bad_folder_says_what_is_wrong(tiny_checkpoint, tmp_path):
    ref = resolve_model(tiny_checkpoint("bert"))
    assert resolve_model(ref) is ref
    assert isinstance(ref, ModelRef)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    shutil.copy(tiny_checkpoint("bert") / "config.json", tmp_path / "empty" / "config.json")
    with pytest.raises(CheckpointError, match="no weights"):
        resolve_model(str(tmp_path / "empty"))
