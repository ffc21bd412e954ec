"""LoRA as a parameter transform, and adapter folders loaded through ``load_classifier``."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from flax import traverse_util

from flaxmodel import load_classifier
from flaxmodel import CheckpointError, Classifier, ConfigError, Tokenizer, load_checkpoint
from flaxmodel.ckpts.adapters import ADAPTER_CONFIG, base_reference, save_adapter
from flaxmodel.core.lora import LoraConfig, init_adapters, merge, target_paths
from tests.fixtures import LABELS, SHORT_TEXTS


@pytest.fixture()
def base(tiny_checkpoint):
    folder = str(tiny_checkpoint("bert", head=False))
    return folder, load_checkpoint(folder, labels=LABELS)


def _random_adapters(params, lora: LoraConfig, seed: int = 1):
    adapters = init_adapters(params, lora, jax.random.PRNGKey(seed))
    # Fresh adapters have b = 0; give b values so the merge visibly changes the model.
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 1), 64))
    return traverse_util.path_aware_map(
        lambda path, x: 0.1 * jax.random.normal(next(keys), x.shape) if path[-1] == "lora_b" else x, adapters
    )


def test_targets_select_dense_layers_by_name(base):
    _, checkpoint = base
    every = target_paths(checkpoint.params, LoraConfig(targets=("query", "value")))
    assert [p[-2:] for p in every] == [("attention", "query"), ("attention", "value")] * 2
    outputs = target_paths(checkpoint.params, LoraConfig(targets=("ffn.output",)))
    assert [p[-2:] for p in outputs] == [("ffn", "output")] * 2
    assert len(target_paths(checkpoint.params, LoraConfig())) == 2 * 6
    with pytest.raises(ConfigError, match="match no dense layer"):
        target_paths(checkpoint.params, LoraConfig(targets=("qkv",)))


def test_fresh_adapters_leave_the_model_unchanged_and_merge_adds_the_low_rank_product(base):
    _, checkpoint = base
    params, lora = checkpoint.params, LoraConfig(rank=4, alpha=8)
    fresh = init_adapters(params, lora, jax.random.PRNGKey(0))
    for a, b in zip(jax.tree_util.tree_leaves(merge(params, fresh, lora.scale)), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)

    adapters = _random_adapters(params, lora)
    merged = merge(params, adapters, lora.scale)
    factors = adapters["encoder"]["layer_1"]["attention"]["query"]
    kernel = params["encoder"]["layer_1"]["attention"]["query"]["kernel"]
    expected = kernel + 2.0 * np.asarray(factors["lora_a"]) @ np.asarray(factors["lora_b"])
    np.testing.assert_allclose(merged["encoder"]["layer_1"]["attention"]["query"]["kernel"], expected, rtol=1e-6)
    np.testing.assert_array_equal(merged["head"]["classifier"]["kernel"], params["head"]["classifier"]["kernel"])


def _save(folder, base_folder, checkpoint, lora, adapters, trained):
    save_adapter(
        str(folder),
        adapters=adapters,
        trained=trained,
        config=checkpoint.config,
        lora=lora,
        base=base_reference(base_folder),
    )
    Tokenizer.from_folder(base_folder, 48).save(str(folder))


def test_adapter_folder_loads_as_the_merged_model(base, tmp_path):
    base_folder, checkpoint = base
    lora = LoraConfig(rank=2, alpha=4, targets=("query", "value", "intermediate"))
    adapters = _random_adapters(checkpoint.params, lora)
    trained = {"head": jax.tree_util.tree_map(lambda x: x + 0.5, checkpoint.params["head"])}
    trained_norm = {"encoder": {"layer_0": {"ffn_norm": {"scale": checkpoint.params["encoder"]["layer_0"]["ffn_norm"]["scale"] * 2}}}}
    both = {**trained, **trained_norm}
    _save(tmp_path / "adapter", base_folder, checkpoint, lora, adapters, both)

    expected_params = merge(
        {**checkpoint.params, "head": trained["head"]}, adapters, lora.scale
    )
    expected_params["encoder"]["layer_0"]["ffn_norm"]["scale"] = trained_norm["encoder"]["layer_0"]["ffn_norm"]["scale"]
    expected = Classifier(checkpoint.config, expected_params, Tokenizer.from_folder(base_folder, 48))
    loaded = load_classifier(str(tmp_path / "adapter"))
    assert loaded.labels == LABELS
    np.testing.assert_allclose(loaded.predict_proba(SHORT_TEXTS), expected.predict_proba(SHORT_TEXTS), atol=1e-6)
    # Merged once at load time: inference runs a plain parameter tree.
    assert "lora_a" not in str(traverse_util.flatten_dict(loaded.host_params).keys())


def test_adapter_refuses_a_different_base(base, tmp_path, tiny_checkpoint):
    base_folder, checkpoint = base
    lora = LoraConfig(rank=2)
    _save(tmp_path / "adapter", base_folder, checkpoint, lora, _random_adapters(checkpoint.params, lora), {"head": checkpoint.params["head"]})
    moved = tmp_path / "other-base"
    shutil.copytree(tiny_checkpoint("bert", head=False, seed=7), moved)
    config_path = tmp_path / "adapter" / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    config["base_model"]["path"] = str(moved)
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not the one this adapter was trained on"):
        load_checkpoint(str(tmp_path / "adapter"))

    config["base_model"] = {"package": "some-other-encoder"}
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown base package"):
        load_checkpoint(str(tmp_path / "adapter"))


def test_an_adapter_over_a_packaged_base_names_the_package_and_loads_from_it(base, tmp_path, monkeypatch):
    from flaxmodel.ckpts import adapters as adapters_module
    from flaxmodel.ckpts.adapters import weights_digest

    fixture_folder, checkpoint = base
    base_folder = str(tmp_path / "on-the-training-machine")
    moved = tmp_path / "installed-elsewhere"
    shutil.copytree(fixture_folder, base_folder)
    shutil.copytree(fixture_folder, moved)
    monkeypatch.setitem(adapters_module.PACKAGED_BASES, weights_digest(base_folder), "tiny-encoder")
    monkeypatch.setitem(adapters_module._PACKAGE_FOLDERS, "tiny-encoder", lambda: str(moved))
    assert base_reference(base_folder) == {"package": "tiny-encoder", "sha256": weights_digest(base_folder)}

    lora = LoraConfig(rank=2)
    _save(tmp_path / "adapter", base_folder, checkpoint, lora, _random_adapters(checkpoint.params, lora), {"head": checkpoint.params["head"]})
    shutil.rmtree(base_folder)  # the training machine's copy is gone: the package's folder is used
    assert load_checkpoint(str(tmp_path / "adapter")).config == checkpoint.config


def test_adapter_with_missing_factor_is_rejected(base, tmp_path):
    from safetensors.numpy import load_file, save_file

    base_folder, checkpoint = base
    lora = LoraConfig(rank=2, targets=("query",))
    _save(tmp_path / "adapter", base_folder, checkpoint, lora, _random_adapters(checkpoint.params, lora), {"head": checkpoint.params["head"]})
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    del tensors["bert.encoder.layer.0.attention.self.query.lora_B.weight"]
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match="incomplete or mis-shaped LoRA factors"):
        load_checkpoint(str(tmp_path / "adapter"))
