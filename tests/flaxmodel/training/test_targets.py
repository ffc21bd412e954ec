"""Target-group annotations and the target-head command.

Each source's annotations map onto the seven categories by its explicit table:
an attack names its groups, a text that is not hateful is a known 0 everywhere,
and what a source does not annotate is masked.  The command trains a head on a
model folder's frozen encoder and writes a folder that loads with ``targets``.
"""

from __future__ import annotations

import csv
import json
import os
import re

import jax
import numpy as np
import pytest

from flaxmodel import ConfigError, DataError, load_checkpoint, load_classifier, multilabel_scores
from flaxmodel.core.model import apply
from flaxmodel.inference import threshold_for_f1
from flaxmodel.inference.padding import pad_batch
from flaxmodel.training import TrainConfig, targets as command, train
from flaxmodel.training.mixture import DEFAULT_MIXTURE, load_mixture, read_mixture
from flaxmodel.training.prepare import prepare
from flaxmodel.training.state import assemble, masked_bce
from flaxmodel.training.target_data import (
    CATEGORIES,
    TRAINING_SOURCES,
    codes_categories,
    read_dynahate_dev,
    read_target_sets,
)
from tests.flaxmodel.training.conftest import assert_one_error_line

CONVABUSE_HEADER = ["user", "Annotator1_is_abuse.1", "Annotator1_is_abuse.-2", "Annotator1_racist", "Annotator1_sexist"]


def _csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def data_root(tmp_path):
    """A few rows of each annotating source, in the upstream columns."""
    root = tmp_path / "data"
    hatexplain = [
        ["they are all animals go back", "hatespeech", "African", "Nonreligious", "No_gender", "No_orientation", "None"],
        ["nice day at the mosque", "normal", "No_race", "Islam", "No_gender", "No_orientation", "None"],
        ["shut up you idiot woman", "offensive", "No_race", "Nonreligious", "Women", "No_orientation", "None"],
        ["refugees should be drowned", "hatespeech", "No_race", "Nonreligious", "No_gender", "No_orientation", "Refugee"],
    ] * 5
    _csv(root / "hatexplain/hatexplain.csv", ["comment", "label", "Race", "Religion", "Gender", "Sexual Orientation", "Miscellaneous"], hatexplain)
    convabuse = [["go away stupid bot", "", "1", "", ""], ["you are lovely", "1", "", "", ""], ["women belong in the kitchen", "", "1", "", "1"]]
    for split in ("train", "valid"):
        _csv(root / f"convabuse/ConvAbuseEMNLP{split}.csv", CONVABUSE_HEADER, convabuse)
    edos = [["women are inferior", "sexist", "2. derogation", s] for s in ("train", "dev")]
    edos += [["nice game last night", "not sexist", "none", s] for s in ("train", "dev")]
    _csv(root / "edos/edos_labelled_aggregated.csv", ["text", "label_sexist", "label_category", "split"], edos)
    _csv(root / "toxigen_seeds/sentences.csv", ["group", "label", "text"], [["trans", "hate", "trans people are sick"], ["jewish", "neutral", "jewish holidays are in autumn"]] * 8)
    hatemoji = [["they are 🐒🐒", "1", "['bla']"], ["i love 🌈 people", "0", "['none']"], ["🐷 eaters out", "1", "['mus', 'arab']"]]
    for split in ("train", "validation"):
        _csv(root / f"hatemoji_build/{split}.csv", ["text", "label_gold", "target"], hatemoji)
    _csv(root / "dynahate/dev.csv", ["text", "label", "target"], [["immigrants are vermin", "hate", "immig, ref"], ["immigrants are welcome", "nothate", "none"], ["they are scum", "hate", "notgiven"]])
    _csv(root / "dynahate/train.csv", ["text", "label"], [["immigrants are not welcome", "hate"]])
    return root


def _row(sets, name, text):
    s = next(s for s in sets if s.name == name)
    i = s.texts.index(text)
    return dict(zip(CATEGORIES, s.labels[i])), dict(zip(CATEGORIES, s.known[i])), bool(s.hateful[i])


def test_each_source_maps_its_annotations_and_masks_what_it_does_not_say(data_root):
    train, val = read_target_sets(load_mixture(DEFAULT_MIXTURE), str(data_root))
    sets = train + val
    labels, known, hateful = _row(sets, "hatexplain", "they are all animals go back")
    assert hateful and labels["race"] == 1 and sum(labels.values()) == 1 and all(known.values())
    # A mention of a group in a normal post attacks nobody: known zeros.
    labels, known, _ = _row(sets, "hatexplain", "nice day at the mosque")
    assert sum(labels.values()) == 0 and all(known.values())
    # An offensive post with a group is not decided: masked.
    assert not any(_row(sets, "hatexplain", "shut up you idiot woman")[1].values())
    labels, known, _ = _row(sets, "hatexplain", "refugees should be drowned")
    assert labels["origin"] == 1
    labels, known, hateful = _row(sets, "convabuse", "women belong in the kitchen")
    assert hateful and labels["gender"] == 1 and not known["religion"] and not known["origin"] and known["race"]
    labels, known, hateful = _row(sets, "convabuse", "go away stupid bot")
    assert not hateful and sum(labels.values()) == 0
    labels, known, _ = _row(sets, "edos", "women are inferior")
    assert labels["gender"] == 1 and [c for c, k in known.items() if k] == ["gender"]
    labels, _, _ = _row(sets, "toxigen", "trans people are sick")
    assert labels["gender_identity"] == 1
    labels, _, _ = _row(sets, "hatemoji_build", "🐷 eaters out")
    assert labels["religion"] == 1 and labels["race"] == 1
    assert {s.name for s in train} == {s.name for s in val} == {"hatexplain", "convabuse", "edos", "toxigen", "hatemoji_build", "functional"}
    dev = read_dynahate_dev(str(data_root))
    assert dict(zip(CATEGORIES, dev.labels[0]))["origin"] == 1 and not dev.known[2].any() and not dev.hateful[1]
    # The perturbation of a trained entry is not a fair judge of a model trained on DynaHate.
    unseen = read_dynahate_dev(str(data_root), unseen=True)
    assert unseen.texts == ["immigrants are vermin", "they are scum"] and unseen.hateful.tolist() == [True, True]
    np.testing.assert_array_equal(unseen.labels, dev.labels[[0, 2]])


def test_a_research_mixture_also_trains_the_head_on_conan(data_root):
    conan = [["muslims are invaders", "Most muslims are our neighbours.", "MUSLIMS"]] * 10
    conan += [["gays are a disease", "Love is not a disease.", "LGBT+"], ["old people are leeches", "They built this town.", "other"]] * 5
    _csv(data_root / "conan/Multitarget-CONAN.csv", ["HATE_SPEECH", "COUNTER_NARRATIVE", "TARGET"], conan)
    default_train, _ = read_target_sets(load_mixture(DEFAULT_MIXTURE), str(data_root))
    train, val = read_target_sets(load_mixture(DEFAULT_MIXTURE.replace("default.toml", "research.toml")), str(data_root))
    assert [s.name for s in train] == [s.name for s in default_train] + ["conan_hate", "conan_counter"]
    sets = train + val
    labels, known, hateful = _row(sets, "conan_hate", "muslims are invaders")
    assert hateful and labels["religion"] == 1 and sum(labels.values()) == 1 and all(known.values())
    labels, known, _ = _row(sets, "conan_hate", "gays are a disease")
    assert labels["sexuality"] == 1 and not known["gender_identity"] and known["race"]
    assert not any(_row(sets, "conan_hate", "old people are leeches")[1].values())
    labels, known, hateful = _row(sets, "conan_counter", "Most muslims are our neighbours.")
    assert not hateful and sum(labels.values()) == 0 and all(known.values())


def test_the_functional_suite_targets_its_attacks_only(data_root):
    train, _ = read_target_sets(load_mixture(DEFAULT_MIXTURE), str(data_root))
    suite = next(s for s in train if s.name == "functional")
    attacks = suite.hateful & suite.known.all(axis=1)
    assert (suite.labels[attacks].sum(axis=1) >= 1).mean() > 0.9
    assert not suite.labels[~suite.hateful].any() and suite.known[~suite.hateful].all()


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("bla", ("race",)),
        ("immig, ref", ("origin",)),
        ("['mus', 'sikh', 'arab']", ("religion", "race")),
        ("nat.poland", ("origin",)),
        ("blawom", ("race", "gender")),
        ("wc", ()),
        ("notgiven", None),
    ],
)
def test_target_codes(cell, expected):
    assert codes_categories(cell, "dev.csv") == expected


def test_an_unknown_target_code_is_an_error_naming_it():
    with pytest.raises(DataError, match="'martians'"):
        codes_categories("martians", "dev.csv")


def test_best_f1_threshold_and_per_target_scores():
    positive = np.array([True, True, False, False, True])
    score = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    chosen = threshold_for_f1(positive, score)
    assert chosen["threshold"] == 0.8 and chosen["precision"] == 1.0 and chosen["recall"] == pytest.approx(2 / 3)
    report = multilabel_scores(np.array([[1, 0], [0, 0], [1, 1]]), np.array([[1, 0], [1, 0], [0, 1]]), ["a", "b"])
    assert report["per_target"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert report["per_target"]["b"]["f1"] == 1.0 and report["macro_f1"] == 0.75


def test_the_command_writes_a_folder_that_labels_targets(tiny_checkpoint, data_root, tmp_path, capsys):
    out = tmp_path / "with_head"
    args = ["--model", str(tiny_checkpoint("bert")), "--data_root", str(data_root), "--output", str(out)]
    assert command.main([*args, "--steps", "30", "--hidden_size", "4", "--max_length", "32"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["per_category"]) == set(CATEGORIES)
    assert set(printed["review_figures"]) == {"dynahate_dev", "dynahate_dev_unseen", "hatemoji_build_validation"}
    classifier = load_classifier(str(out), precision="float32")
    assert classifier.targets == CATEGORIES
    scores = classifier.predict_targets(["they are 🐒🐒", "a quiet day"])
    assert scores.shape == (2, len(CATEGORIES)) and ((scores > 0) & (scores < 1)).all()
    # The source folder is left as it was.
    assert not (tiny_checkpoint("bert") / "target_head.json").exists()


def test_the_command_refuses_a_folder_without_data_before_reading(tiny_checkpoint, tmp_path, capsys):
    assert command.main(["--model", str(tiny_checkpoint("bert")), "--data_root", str(tmp_path)]) == 2
    assert_one_error_line(capsys.readouterr().err, command.PROG, "no hatexplain/ there")


def _annotating_mixture(path) -> str:
    """The default mixture's sources that annotate targets, and nothing else, as a mixture file."""
    text = open(DEFAULT_MIXTURE, encoding="utf-8").read()
    head, *sections = re.split(r"(?m)^(?=\[sources\.)", text)
    names = {re.match(r"\[sources\.(\w+)", s).group(1) for s in sections}
    keep = [s for s in sections if re.match(r"\[sources\.(\w+)", s).group(1) in TRAINING_SOURCES]
    path.write_text(head + "".join(keep), encoding="utf-8")
    assert set(TRAINING_SOURCES) <= names
    return str(path)


def test_joint_training_annotates_its_rows_and_trains_a_target_head_beside_the_classes(data_root, base_folder, tmp_path):
    mixture = _annotating_mixture(tmp_path / "mixture.toml")
    settings = dict(mixture=mixture, data_root=str(data_root), model=base_folder, epochs=2, batch_size=8, max_length=16)
    runs, results = {}, {}
    for weight in (0.0, 1.0):
        config = TrainConfig(output=str(tmp_path / f"run{weight}"), learning_rate=3e-3, target_weight=weight, **settings)
        runs[weight], results[weight] = prepare(config), train(config, progress=False)
    run, result = runs[1.0], results[1.0]
    assert runs[0.0].train_groups is None

    # Each training row carries its source's annotation of its text; the rest of a row is unknown.
    labels, known = run.train_groups
    train_sets, _ = read_mixture(load_mixture(mixture), str(data_root))
    rows = [(s.name, text) for s in train_sets for text in s.texts]
    assert len(rows) == len(labels) == len(run.train_ids)
    expected = {
        ("hatexplain", "they are all animals go back"): ({"race"}, set(CATEGORIES)),
        ("hatexplain", "shut up you idiot woman"): (set(), set()),
        ("edos", "women are inferior"): ({"gender"}, {"gender"}),
        ("hatemoji_build", "🐷 eaters out"): ({"religion", "race"}, set(CATEGORIES)),
        ("toxigen", "jewish holidays are in autumn"): (set(), set(CATEGORIES)),
    }
    for key, (attacked, said) in expected.items():
        i = rows.index(key)
        assert {c for c, y in zip(CATEGORIES, labels[i]) if y} == attacked, key
        assert {c for c, k in zip(CATEGORIES, known[i]) if k} == said, key
    assert known.any(axis=1).sum() > len(rows) / 2

    # The head learns the annotated rows: its masked loss falls from the fresh head's.
    ids, mask = pad_batch([run.train_ids[i] for i in range(len(rows))], len(rows), 16, run.model_config.pad_token_id)
    def target_loss(params):
        logits = apply(params, ids, mask, config=run.model_config)[:, run.model_config.num_labels :]
        return float(masked_bce(logits, labels, known))
    start = assemble(run.frozen, run.initial.trainable, run.spec.lora)
    assert target_loss(result.params) < 0.7 * target_loss(start)

    # It shaped the class scores too, and the exported model has no head without thresholds.
    texts = ["they are all animals go back", "nice day at the mosque"]
    scores = {w: load_classifier(results[w].best_folder, precision="float32") for w in results}
    assert scores[1.0].targets == () and not os.path.exists(os.path.join(result.best_folder, "target_head.json"))
    assert np.abs(scores[1.0].predict_proba(texts) - scores[0.0].predict_proba(texts)).max() > 1e-4


def test_the_target_head_learns_nothing_from_cells_its_source_does_not_annotate(tiny_checkpoint):
    config = load_checkpoint(str(tiny_checkpoint("bert")), target_head=False).config.with_targets(CATEGORIES, 4)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(32, config.hidden_size)).astype(np.float32)
    known = rng.random((32, len(CATEGORIES))) < 0.5
    labels = ((rng.random(known.shape) < 0.3) & known).astype(np.float32)
    settings = command.TargetHeadSettings(model="", data_root="", steps=3, batch_rows=16, hidden_size=4)
    trained = command.train_head(config, features, labels, known, settings)
    # Every masked cell says "attacked" instead of 0: the same head, bit for bit.
    masked_ones = np.where(known, labels, 1.0).astype(np.float32)
    same = command.train_head(config, features, masked_ones, known, settings)
    for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(same)):
        np.testing.assert_array_equal(a, b)
    # Flipping annotated cells does change it (the check above is not vacuous).
    flipped = np.where(known, 1.0 - labels, labels).astype(np.float32)
    other = command.train_head(config, features, flipped, known, settings)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(other)))


def test_target_weight_needs_a_mixture(fixture_data, tmp_path):
    config = TrainConfig(output=str(tmp_path / "run"), train=str(fixture_data / "train.jsonl"), target_weight=0.5)
    with pytest.raises(ConfigError, match="--target_weight needs --mixture"):
        config.validate()
