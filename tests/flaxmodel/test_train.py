"""Fine-tuning: it learns, it resumes exactly, and what it exports loads and predicts the same.

Every run trains the session's tiny random BERT (hidden size 32, two layers) on a
trivially learnable fixture: friendly words against hostile ones.
"""

from __future__ import annotations

import dataclasses
import json
import random

import jax
import numpy as np
import pytest

from flaxmodel import load_classifier
from flaxmodel.checkpoint import load_checkpoint
from flaxmodel.config import ConfigError
from flaxmodel.data import LabeledData
from flaxmodel.predictor import Classifier
from flaxmodel.tokenizer import TextEncoder
from flaxmodel.train import Run, TrainConfig, class_weights, epoch_batches, main, train

FRIENDLY = ("great", "lovely", "nice", "thanks", "sharing", "weather", "today", "love")
HOSTILE = ("hate", "stupid", "idea", "away", "welcome", "nobody", "opinion", "not")
LABELS = ("friendly", "hostile")


def _write(path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(count):
            label = i % 2
            words = rng.choices(HOSTILE if label else FRIENDLY, k=rng.randint(2, 6))
            f.write(json.dumps({"text": " ".join(words), "label": LABELS[label]}) + "\n")


@pytest.fixture()
def fixture_data(tmp_path):
    _write(tmp_path / "train.jsonl", 64, seed=1)
    _write(tmp_path / "val.jsonl", 32, seed=2)
    return tmp_path


@pytest.fixture()
def base_folder(tiny_checkpoint):
    return str(tiny_checkpoint("bert", head=False))


def _config(data, base, output, **overrides) -> TrainConfig:
    settings = dict(
        train=str(data / "train.jsonl"),
        val=str(data / "val.jsonl"),
        output=str(output),
        model=base,
        labels=LABELS,
        epochs=4,
        batch_size=16,
        max_length=16,
        learning_rate=1e-2,
        warmup_ratio=0.1,
        seed=0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def _epoch_records(run_dir) -> list[dict]:
    return [r for r in map(json.loads, open(run_dir / "metrics.jsonl")) if r["event"] == "epoch"]


def _assert_trees_equal(a, b) -> None:
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
def test_training_lowers_the_loss_and_beats_the_untrained_model(fixture_data, base_folder, tmp_path, lora_rank):
    overrides = {"lora_rank": lora_rank, "train_norms": True} if lora_rank else {}
    run = Run(_config(fixture_data, base_folder, tmp_path / "run", **overrides), progress=False)
    untrained = run.evaluate()
    result = run.run()
    assert result.finished and result.best_folder
    epochs = _epoch_records(tmp_path / "run")
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    best = max(epochs, key=lambda r: r["val_macro_f1"])
    assert result.best_macro_f1 == best["val_macro_f1"] and result.best_epoch == best["epoch"]
    assert best["val_accuracy"] >= 0.9 > untrained["accuracy"]


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
def test_resumed_run_ends_with_the_uninterrupted_parameters(fixture_data, base_folder, tmp_path, lora_rank):
    straight = train(_config(fixture_data, base_folder, tmp_path / "a", lora_rank=lora_rank), progress=False)
    # Stop mid-epoch (4 steps per epoch), after an epoch end and off the checkpoint schedule.
    config = _config(fixture_data, base_folder, tmp_path / "b", lora_rank=lora_rank)
    first = train(config, stop_after_steps=6, progress=False)
    assert first.step == 6 and not first.finished
    resumed = train(config, progress=False)
    assert resumed.finished
    _assert_trees_equal(resumed.trainable, straight.trainable)
    assert [r["step"] for r in _epoch_records(tmp_path / "b")] == [r["step"] for r in _epoch_records(tmp_path / "a")]


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
def test_exported_model_predicts_like_the_in_memory_one(fixture_data, base_folder, tmp_path, lora_rank):
    config = _config(fixture_data, base_folder, tmp_path / "run", lora_rank=lora_rank, val=None, epochs=1)
    result = train(config, progress=False)
    texts = ["great lovely", "stupid idea", "nice", "hate hate not welcome"]
    text_encoder = TextEncoder.from_folder(base_folder, config.max_length)
    in_memory = Classifier(load_checkpoint(result.best_folder).config, result.params, text_encoder)
    exported = load_classifier(result.best_folder, max_length=config.max_length)
    np.testing.assert_allclose(exported.predict_proba(texts), in_memory.predict_proba(texts), atol=1e-6)
    names = sorted(p.name for p in (tmp_path / "run" / "best").iterdir())
    if lora_rank:
        assert names == ["adapter_config.json", "adapter_model.safetensors", "config.json", "tokenizer.json"]
    else:
        assert names == ["config.json", "model.safetensors", "tokenizer.json"]


def test_restart_with_other_settings_is_refused(fixture_data, base_folder, tmp_path):
    config = _config(fixture_data, base_folder, tmp_path / "run")
    train(config, stop_after_steps=1, progress=False)
    with pytest.raises(ConfigError, match="learning_rate differ"):
        train(dataclasses.replace(config, learning_rate=1.0), progress=False)


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--lora_rank", "4", "--lora_targets", "qkv"], "match no dense layer"),
        (["--class_weights", "hate:3"], "--class_weights"),
        (["--train_norms"], "--train_norms only applies to LoRA"),
        (["--model", "/no/such/folder"], "no such checkpoint folder"),
    ],
)
def test_bad_settings_fail_before_training(fixture_data, base_folder, tmp_path, flag, message, capsys):
    args = ["--train", str(fixture_data / "train.jsonl"), "--output", str(tmp_path / "run"), "--model", base_folder]
    with pytest.raises(SystemExit) as exit_info:
        main(args + flag)
    assert message in str(exit_info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_batches_depend_only_on_seed_and_epoch_and_cover_every_row():
    lengths = np.random.default_rng(0).integers(3, 60, size=1000)
    first = epoch_batches(lengths, 32, seed=5, epoch=2)
    again = epoch_batches(lengths, 32, seed=5, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert sorted(np.concatenate(first).tolist()) == list(range(1000))
    assert not all(np.array_equal(a, b) for a, b in zip(first, epoch_batches(lengths, 32, seed=5, epoch=3)))
    # Length-sorted pools: a batch spans far fewer lengths than a random one would.
    assert np.mean([np.ptp(lengths[b]) for b in first]) < 10


def test_class_weights():
    data = LabeledData(texts=["x"] * 8, label_ids=np.array([0] * 6 + [1] * 2), labels=("a", "b"))
    np.testing.assert_allclose(class_weights("balanced", data), [8 / 12, 8 / 4])
    np.testing.assert_allclose(class_weights("sqrt", data), np.sqrt([8 / 12, 8 / 4]))
    np.testing.assert_allclose(class_weights("b=3", data), [1, 3])
    with pytest.raises(ConfigError, match="unknown labels"):
        class_weights("c=2", data)
