"""Fine-tuning: it learns, it resumes exactly, and what it exports loads and predicts the same."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from flaxmodel import load_classifier, resolve_model
from flaxmodel.ckpts.loader import load_checkpoint
from flaxmodel.errors import ConfigError
from flaxmodel.inference.predictor import Classifier
from flaxmodel.inference.tokenizer import Tokenizer
from flaxmodel.training import loop, main, train
from flaxmodel.training.batches import class_weights, epoch_batches
from flaxmodel.training.evaluation import evaluate_state
from flaxmodel.training.prepare import prepare
from tests.flaxmodel.training.conftest import assert_one_error_line


# The two runs every test trains: full fine-tuning, and LoRA with the norms trained (so
# exports carry trained norms too).  Equal settings share one compiled train step.
RUNS = pytest.mark.parametrize("variant", [{}, {"lora_rank": 4, "train_norms": True}], ids=["full", "lora"])


def _epoch_records(run_dir) -> list[dict]:
    return [r for r in map(json.loads, open(run_dir / "metrics.jsonl")) if r["event"] == "epoch"]


def _assert_trees_equal(a, b) -> None:
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@RUNS
def test_training_lowers_the_loss_and_beats_the_untrained_model(make_config, tmp_path, variant):
    config = make_config(**variant)
    run = prepare(config)
    (untrained,) = evaluate_state(run, run.initial).values()
    result = train(config, progress=False)
    assert result.finished and result.best_folder
    epochs = _epoch_records(tmp_path / "run")
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    best = max(epochs, key=lambda r: r["val_macro_f1"])
    # The state keeps the score in float32.
    assert result.best_macro_f1 == pytest.approx(best["val_macro_f1"], abs=1e-6)
    assert result.best_epoch == best["epoch"]
    assert best["val_accuracy"] >= 0.9 > untrained["accuracy"]


@RUNS
def test_resumed_run_ends_with_the_uninterrupted_parameters(make_config, tmp_path, variant):
    straight = train(make_config("a", **variant), progress=False)
    # Stop mid-epoch (4 steps per epoch), after an epoch end and off the checkpoint schedule.
    config = make_config("b", **variant)
    first = train(config, stop_after_steps=6, progress=False)
    assert first.step == 6 and not first.finished
    # A record of a step the checkpoint does not hold, as a crash after logging leaves: resuming drops it.
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"event": "epoch", "epoch": 2, "step": 7}) + "\n")
    resumed = train(config, progress=False)
    assert resumed.finished
    _assert_trees_equal(resumed.state, straight.state)
    assert [r["step"] for r in _epoch_records(tmp_path / "b")] == [r["step"] for r in _epoch_records(tmp_path / "a")]


@RUNS
def test_exported_model_predicts_like_the_in_memory_one(make_config, base_folder, tmp_path, variant):
    # Without validation data, best/ is the last epoch's model.
    config = make_config(val=None, **variant)
    result = train(config, progress=False)
    assert result.best_epoch == 4 and result.best_macro_f1 is None
    texts = ["great lovely", "stupid idea", "nice", "hate hate not welcome"]
    tokenizer = Tokenizer.from_folder(base_folder, config.max_length)
    in_memory = Classifier(load_checkpoint(result.best_folder).config, result.params, tokenizer)
    exported = load_classifier(result.best_folder, max_length=config.max_length)
    np.testing.assert_allclose(exported.predict_proba(texts), in_memory.predict_proba(texts), atol=1e-6)
    names = sorted(p.name for p in (tmp_path / "run" / "best").iterdir())
    if variant:
        assert names == [
            "adapter_config.json", "adapter_model.safetensors", "config.json", "tokenizer.json", "training_data.json"
        ]  # fmt: skip
    else:
        assert names == ["config.json", "model.safetensors", "tokenizer.json", "training_data.json"]
    # Files given as --train declare no licence: such a model may not teach a default one.
    assert json.loads((tmp_path / "run" / "best" / "training_data.json").read_text())["use"] == "undeclared"


def test_a_model_trained_with_preprocessing_declares_it_and_every_later_use_applies_it(make_config):
    config = make_config(val=None, epochs=1, preprocessing=("emoji_names",))
    result = train(config, progress=False)
    ref = resolve_model(result.best_folder, max_length=config.max_length)
    assert ref.preprocessing == ("emoji_names",)
    exported = load_classifier(ref)
    np.testing.assert_array_equal(
        exported.predict_proba(["you are a 🐍"]), exported.predict_proba(["you are a snake"])
    )


def test_an_interrupted_run_checkpoints_the_step_it_reached(make_config, tmp_path, monkeypatch):
    real_step = loop.train_step

    def interrupted_at_3(state, *args, **kwargs):
        if int(state.step) == 3:
            raise KeyboardInterrupt
        return real_step(state, *args, **kwargs)

    config = make_config()
    monkeypatch.setattr(loop, "train_step", interrupted_at_3)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    monkeypatch.undo()
    assert "3" in os.listdir(tmp_path / "run" / "checkpoints")
    assert train(config, stop_after_steps=3, progress=False).step == 3


def test_the_train_records_carry_the_steps_metrics(make_config, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "LOG_EVERY_STEPS", 2)
    train(make_config(), stop_after_steps=4, progress=False)
    records = [r for r in map(json.loads, open(tmp_path / "run" / "metrics.jsonl")) if r["event"] == "train"]
    assert [r["step"] for r in records] == [2, 4]
    for record in records:
        assert record["loss"] > 0 and record["grad_norm"] > 0
    # The standard run warms up for the first of its 16 steps, then decays linearly from 1e-2 to 0.
    assert [r["learning_rate"] for r in records] == pytest.approx([1e-2, 1e-2 * 13 / 15])


def test_restart_with_other_settings_is_refused(make_config):
    config = make_config()
    train(config, stop_after_steps=1, progress=False)
    with pytest.raises(ConfigError, match="learning_rate differ"):
        train(dataclasses.replace(config, learning_rate=1.0), progress=False)


def test_a_run_started_before_a_setting_existed_resumes_with_its_default(make_config, tmp_path):
    config = make_config()
    train(config, stop_after_steps=1, progress=False)
    path = tmp_path / "run" / "train_config.json"
    recorded = json.loads(path.read_text())
    del recorded["target_weight"]
    path.write_text(json.dumps(recorded))
    assert train(config, stop_after_steps=2, progress=False).step == 2
    assert json.loads(path.read_text())["target_weight"] == 0.0


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--lora_rank", "4", "--lora_targets", "qkv"], "match no dense layer"),
        (["--class_weights", "hate:3"], "--class_weights"),
        (["--train_norms"], "--train_norms only applies to LoRA"),
        (["--model", "/no/such/folder"], "no such checkpoint folder, nor a bundled model (default, large)"),
        # A bundled model's name resolves to its folder, as in the jobs: the default is a LoRA adapter.
        (["--model", "default", "--lora_rank", "4"], "flaxmodel/default is a LoRA adapter"),
        (["--teachers", "/no/such/folder"], "--teachers /no/such/folder: no such model folder"),
        (["--distill_weight", "1.5"], "--distill_weight must be in [0, 1]"),
        (["--preprocessing", "stemming"], "unknown preprocessing steps ['stemming']"),
    ],
)
def test_bad_settings_fail_before_training(fixture_data, base_folder, tmp_path, capsys, flag, message):
    args = ["--train", str(fixture_data / "train.jsonl"), "--output", str(tmp_path / "run"), "--model", base_folder]
    assert main(args + flag) == 2
    assert_one_error_line(capsys.readouterr().err, "flaxmodel-train", message)
    assert not (tmp_path / "run").exists()


def test_the_command_line_trains_and_prints_a_summary(make_config, capsys):
    # The standard run's flags, so it shares the compiled train step of the other tests.
    config = make_config()
    args = ["--train", config.train, "--val", config.val, "--output", config.output, "--model", config.model]
    args += ["--labels", ",".join(config.labels), "--epochs", "4", "--batch_size", "16", "--max_length", "16"]
    assert main(args + ["--learning_rate", "1e-2", "--warmup_ratio", "0.1", "--stop_after_steps", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"step": 2, "total_steps": 16, "best_folder": None, "best_epoch": None, "best_val_macro_f1": None}
    with open(f"{config.output}/train_config.json") as f:
        assert json.load(f) == config.to_json()


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
    labels, counts = ("a", "b"), np.array([6, 2])
    np.testing.assert_allclose(class_weights("balanced", labels, counts), [8 / 12, 8 / 4])
    np.testing.assert_allclose(class_weights("sqrt", labels, counts), np.sqrt([8 / 12, 8 / 4]))
    np.testing.assert_allclose(class_weights("b=3", labels, counts), [1, 3])
    with pytest.raises(ConfigError, match="unknown labels"):
        class_weights("c=2", labels, counts)
