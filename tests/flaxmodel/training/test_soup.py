"""Model soups: the averaged folder loads as the exact weight average of its ingredients."""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import traverse_util

from flaxmodel import ConfigError, Tokenizer, load_checkpoint, load_classifier, recommended_thresholds, write_thresholds
from flaxmodel.ckpts.adapters import ADAPTER_CONFIG, base_reference, save_adapter
from flaxmodel.ckpts.checkpoint import save_checkpoint
from flaxmodel.core.lora import LoraConfig, init_adapters
from flaxmodel.training import soup
from tests.fixtures import LABELS, SHORT_TEXTS, add_target_head
from tests.flaxmodel.training.conftest import assert_one_error_line


@pytest.fixture()
def base(tiny_checkpoint):
    folder = str(tiny_checkpoint("bert", head=False))
    return folder, load_checkpoint(folder, labels=LABELS)


@pytest.fixture()
def two_runs(base, tmp_path):
    """Two rank-2 adapters of the same modules on the tiny base: runs of one recipe, different seeds."""
    base_folder, checkpoint = base
    lora = LoraConfig(rank=2, alpha=4, targets=("query",))
    return tuple(_adapter_folder(tmp_path / n, base_folder, checkpoint, lora, seed) for n, seed in (("a", 1), ("b", 2)))


def _adapter_folder(folder, base_folder, checkpoint, lora: LoraConfig, seed: int) -> str:
    adapters = init_adapters(checkpoint.params, lora, jax.random.PRNGKey(seed))
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 100), 64))
    adapters = traverse_util.path_aware_map(
        lambda path, x: 0.1 * jax.random.normal(next(keys), x.shape) if path[-1] == "lora_b" else x, adapters
    )
    head = jax.tree_util.tree_map(lambda x: x + 0.3 * seed, checkpoint.params["head"])
    norm = checkpoint.params["encoder"]["layer_0"]["ffn_norm"]["scale"] * (1 + 0.1 * seed)
    trained = {"head": head, "encoder": {"layer_0": {"ffn_norm": {"scale": norm}}}}
    save_adapter(
        str(folder), adapters=adapters, trained=trained, config=checkpoint.config, lora=lora,
        base=base_reference(base_folder),
    )
    Tokenizer.from_folder(base_folder, 48).save(str(folder))
    return str(folder)


def _assert_average(soup_folder, folders, weights):
    merged = [load_checkpoint(f).params for f in folders]
    expected = jax.tree_util.tree_map(lambda *xs: sum(w * np.asarray(x) for w, x in zip(weights, xs)), *merged)
    got = load_checkpoint(soup_folder).params
    flat_got, flat_expected = traverse_util.flatten_dict(got), traverse_util.flatten_dict(expected)
    assert flat_got.keys() == flat_expected.keys()
    for path, value in flat_expected.items():
        np.testing.assert_allclose(flat_got[path], value, rtol=1e-5, atol=1e-6, err_msg=str(path))


def test_adapter_soup_is_the_exact_weighted_average_of_the_merged_models(base, tmp_path):
    base_folder, checkpoint = base
    targets = ("query", "value", "intermediate")
    a = _adapter_folder(tmp_path / "a", base_folder, checkpoint, LoraConfig(rank=2, alpha=4, targets=targets), 1)
    b = _adapter_folder(tmp_path / "b", base_folder, checkpoint, LoraConfig(rank=3, alpha=3, targets=targets), 2)

    out = soup.make_soup([a, b], str(tmp_path / "uniform"))
    _assert_average(out, [a, b], [0.5, 0.5])
    saved = json.loads(open(os.path.join(out, ADAPTER_CONFIG)).read())
    assert (saved["rank"], saved["alpha"]) == (5, 5.0)  # ranks add up; the scale is folded into the factors

    weighted = soup.make_soup([a, b], str(tmp_path / "weighted"), weights=[1, 3])
    _assert_average(weighted, [a, b], [0.25, 0.75])
    probabilities = load_classifier(weighted).predict_proba(SHORT_TEXTS)
    assert probabilities.shape == (len(SHORT_TEXTS), len(LABELS))


def test_max_rank_keeps_the_best_low_rank_part_of_the_soups_update(base, tmp_path):
    base_folder, checkpoint = base
    targets = ("query", "intermediate")
    a = _adapter_folder(tmp_path / "a", base_folder, checkpoint, LoraConfig(rank=3, alpha=6, targets=targets), 1)
    b = _adapter_folder(tmp_path / "b", base_folder, checkpoint, LoraConfig(rank=3, alpha=3, targets=targets), 2)
    exact = soup.make_soup([a, b], str(tmp_path / "exact"))
    small = soup.make_soup([a, b], str(tmp_path / "small"), max_rank=4)
    assert json.loads(open(os.path.join(small, ADAPTER_CONFIG)).read())["rank"] == 4

    base_flat = traverse_util.flatten_dict(checkpoint.params)
    exact_flat = traverse_util.flatten_dict(load_checkpoint(exact).params)
    small_flat = traverse_util.flatten_dict(load_checkpoint(small).params)
    adapted = [p for p in exact_flat if p[-1] == "kernel" and any(t in p[-2] for t in targets)]
    assert adapted
    for path in adapted:
        update = np.asarray(exact_flat[path]) - np.asarray(base_flat[path])
        u, s, vt = np.linalg.svd(update, full_matrices=False)
        best = (u[:, :4] * s[:4]) @ vt[:4]
        got = np.asarray(small_flat[path]) - np.asarray(base_flat[path])
        np.testing.assert_allclose(got, best, atol=1e-5, err_msg=str(path))
    for path, value in exact_flat.items():  # the head and the trained norms are averaged as they are
        if path not in adapted:
            np.testing.assert_allclose(small_flat[path], value, atol=1e-6, err_msg=str(path))

    with pytest.raises(ConfigError, match="rank must be at least 1"):
        soup.make_soup([a, b], str(tmp_path / "zero"), max_rank=0)
    assert not (tmp_path / "zero").exists()


def test_one_adapter_is_shrunk_alone_to_a_lower_rank_and_float16_storage(base, tmp_path):
    from safetensors.numpy import load_file

    base_folder, checkpoint = base
    lora = LoraConfig(rank=4, alpha=8, targets=("query", "value", "intermediate"))
    one = _adapter_folder(tmp_path / "one", base_folder, checkpoint, lora, 1)
    halved = soup.make_soup([one], str(tmp_path / "halved"), storage="float16")
    stored = load_file(os.path.join(halved, "adapter_model.safetensors"))
    assert {v.dtype for v in stored.values()} == {np.dtype(np.float16)}
    size = lambda folder: os.path.getsize(os.path.join(folder, "adapter_model.safetensors"))
    assert size(halved) < 0.6 * size(one)
    # float16 storage rounds each tensor at the 11th bit: the probabilities barely move.
    exact = load_classifier(one).predict_proba(SHORT_TEXTS)
    np.testing.assert_allclose(load_classifier(halved).predict_proba(SHORT_TEXTS), exact, atol=2e-3)

    lower = soup.make_soup([one], str(tmp_path / "lower"), max_rank=2)
    assert json.loads(open(os.path.join(lower, ADAPTER_CONFIG)).read())["rank"] == 2
    assert size(lower) < size(one)

    with pytest.raises(ConfigError, match="at least two models, got 1 .*--max_rank or --storage float16"):
        soup.make_soup([one], str(tmp_path / "copy"))
    with pytest.raises(ConfigError, match="storage must be one of float32, float16"):
        soup.make_soup([one], str(tmp_path / "bad"), storage="int4")


def test_full_checkpoint_soup_averages_every_tensor(tiny_checkpoint, tmp_path):
    first = str(tiny_checkpoint("bert"))
    checkpoint = load_checkpoint(first)
    second = str(tmp_path / "second")
    shutil.copytree(first, second)
    save_checkpoint(second, jax.tree_util.tree_map(lambda x: np.asarray(x) * 1.5 + 0.01, checkpoint.params), checkpoint.config)

    out = soup.make_soup([first, second], str(tmp_path / "soup"))
    _assert_average(out, [first, second], [0.5, 0.5])


def test_a_soup_over_a_model_folder_drops_what_was_fitted_to_its_old_weights(two_runs, tiny_checkpoint, tmp_path):
    a, b = two_runs
    shipped = str(tmp_path / "shipped")
    shutil.copytree(a, shipped)
    write_thresholds(shipped, {"hate": 0.7}, {})
    add_target_head(shipped)
    assert load_checkpoint(shipped).config.targets

    soup.make_soup([a, b], shipped)
    assert recommended_thresholds(shipped) == {}
    assert not load_checkpoint(shipped).config.targets
    _assert_average(shipped, [a, b], [0.5, 0.5])

    full = str(tiny_checkpoint("bert"))
    soup.make_soup([full, full], shipped)  # full checkpoints over an adapter folder: the adapter must not win
    assert not os.path.exists(os.path.join(shipped, ADAPTER_CONFIG))
    _assert_average(shipped, [full], [1.0])


def test_runs_of_different_models_are_refused_before_anything_is_written(base, tiny_checkpoint, tmp_path):
    base_folder, checkpoint = base
    lora = LoraConfig(rank=2, alpha=4, targets=("query",))
    a = _adapter_folder(tmp_path / "a", base_folder, checkpoint, lora, 1)
    other_targets = _adapter_folder(tmp_path / "b", base_folder, checkpoint, LoraConfig(rank=2, targets=("value",)), 2)
    relabeled = str(tmp_path / "relabeled")
    shutil.copytree(a, relabeled)
    config = json.loads(open(os.path.join(relabeled, "config.json")).read())
    config["id2label"] = {str(i): f"class_{i}" for i in range(len(LABELS))}
    config["label2id"] = {f"class_{i}": i for i in range(len(LABELS))}
    open(os.path.join(relabeled, "config.json"), "w").write(json.dumps(config))
    out = tmp_path / "never"

    with pytest.raises(ConfigError, match="other modules"):
        soup.make_soup([a, other_targets], str(out))
    with pytest.raises(ConfigError, match="labels"):
        soup.make_soup([a, relabeled], str(out))
    with pytest.raises(ConfigError, match="adapter folders and full checkpoints"):
        soup.make_soup([a, str(tiny_checkpoint("bert"))], str(out))
    with pytest.raises(ConfigError, match="at least two"):
        soup.make_soup([a], str(out))
    with pytest.raises(ConfigError, match="one positive weight per model"):
        soup.make_soup([a, a], str(out), weights=[1, 0])
    assert not out.exists()


def test_command_line_writes_a_loadable_soup_and_reports_bad_input(two_runs, tmp_path, capsys):
    a, b = two_runs
    out = str(tmp_path / "soup")

    assert soup.main(["--models", f"{a},{b}", "--output", out]) == 0
    assert "choose its thresholds on validation" in capsys.readouterr().out
    _assert_average(out, [a, b], [0.5, 0.5])
    bad = {
        "no such model folder": ["--models", f"{a},{tmp_path / 'missing'}"],
        "--weights must be numbers, got '1,x'": ["--models", f"{a},{b}", "--weights", "1,x"],
        "one positive weight per model (2)": ["--models", f"{a},{b}", "--weights", "1"],
        "at least two models": ["--models", a],
    }
    for message, flags in bad.items():
        assert soup.main(flags + ["--output", str(tmp_path / "x")]) == 2
        assert_one_error_line(capsys.readouterr().err, "flaxmodel.training.soup", message)
    assert not (tmp_path / "x").exists()


def test_a_soup_records_its_ingredients_and_every_source_they_trained_on(two_runs, tmp_path):
    a, b = two_runs
    records = {
        a: {"use": "default", "sources": [{"name": "x", "licence": "MIT", "trained": True}, {"name": "y", "licence": "none-stated", "trained": False}]},
        b: {"use": "default", "sources": [{"name": "x", "licence": "MIT", "trained": True}, {"name": "z", "licence": "CC0-1.0", "trained": True}]},
    }
    teacher = {"model": "large@0123456789abcdef:float32", "folder": "flaxmodel/large", "use": "default", "distill_weight": 0.5}
    records[a]["teachers"] = records[b]["teachers"] = [teacher]
    for folder, record in records.items():
        with open(os.path.join(folder, "training_data.json"), "w") as f:
            json.dump(record, f)
    out = soup.make_soup([a, b], str(tmp_path / "soup"), weights=[3, 1])
    record = json.loads(open(os.path.join(out, "training_data.json")).read())
    assert record["use"] == "default"
    assert record["soup_of"] == [{"folder": a, "weight": 0.75}, {"folder": b, "weight": 0.25}]
    assert {s["name"]: s["trained"] for s in record["sources"]} == {"x": True, "y": False, "z": True}
    assert record["teachers"] == [teacher]  # distilled ingredients: the soup names their teacher once
    # One ingredient of another use makes the soup's use undeclared: it may do only what all may.
    records[b]["use"] = "research"
    with open(os.path.join(b, "training_data.json"), "w") as f:
        json.dump(records[b], f)
    assert json.loads(open(os.path.join(soup.make_soup([a, b], str(tmp_path / "mixed")), "training_data.json")).read())["use"] == "undeclared"
