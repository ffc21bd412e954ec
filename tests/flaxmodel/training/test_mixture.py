"""Data mixtures: declared sources and label mappings, partial labels, per-source validation, sampling."""

from __future__ import annotations

import csv
import json
import shutil

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flaxmodel.errors import ConfigError, DataError
from flaxmodel.training import TrainConfig, export_data, functional, main, train
from flaxmodel.training.mixture import DEFAULT_MIXTURE, epoch_rows, load_mixture, read_mixture, validation_rows
from flaxmodel.training.prepare import prepare
from flaxmodel.training.state import partial_label_loss
from tests.flaxmodel.training.conftest import FRIENDLY, HOSTILE, LABELS, STANDARD, assert_one_error_line

MIXTURE = """
classes = ["friendly", "hostile"]
seed = 3
use = "default"

[sources.exact]
reader = "table"
licence = "CC-BY-4.0"
train = "exact/train.jsonl"
val = "exact/val.jsonl"
weight = 1.0
[sources.exact.labels]
friendly = ["friendly"]
hostile = ["hostile"]

[sources.coarse]
# Says only "rude" or "unsure" (partial), and has rows to drop.
reader = "table"
licence = "MIT"
train = "coarse/all.csv"
text_field = "post"
label_field = "tag"
val_fraction = 0.25
weight = 0.5
[sources.coarse.labels]
rude = ["hostile"]
unsure = ["friendly", "hostile"]
spam = []
"""


def _rows(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(count):
        label = i % 2
        words = rng.choice(HOSTILE if label else FRIENDLY, size=rng.integers(2, 6))
        yield " ".join(words), label


@pytest.fixture()
def mixture_root(tmp_path):
    (tmp_path / "exact").mkdir()
    for name, count, seed in (("train", 64, 1), ("val", 32, 2)):
        with open(tmp_path / "exact" / f"{name}.jsonl", "w") as f:
            for text, label in _rows(count, seed):
                f.write(json.dumps({"text": text, "label": LABELS[label]}) + "\n")
    (tmp_path / "coarse").mkdir()
    with open(tmp_path / "coarse" / "all.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["post", "tag"])
        for i, (text, label) in enumerate(_rows(40, 3)):
            writer.writerow([text, "spam" if i % 10 == 9 else ("rude" if label else "unsure")])
    path = tmp_path / "mixture.toml"
    path.write_text(MIXTURE)
    return tmp_path


def test_sources_map_their_labels_onto_our_classes(mixture_root):
    mixture = load_mixture(str(mixture_root / "mixture.toml"))
    train_sets, val_sets = read_mixture(mixture, str(mixture_root))
    exact, coarse = train_sets
    assert (len(exact), exact.label_names) == (64, ("friendly", "hostile"))
    np.testing.assert_array_equal(exact.masks[:2], [[1, 0], [0, 1]])
    # "spam" rows are dropped; "unsure" allows both classes.
    assert coarse.label_names == ("rude", "unsure")
    assert coarse.allowed.tolist() == [[False, True], [True, True]]
    assert [v.name for v in val_sets] == ["exact", "coarse"]
    # The seeded split is disjoint, covers the kept rows, and is the same on every read.
    assert len(coarse) + len(val_sets[1]) == 36
    again = read_mixture(mixture, str(mixture_root))[1][1]
    assert again.texts == val_sets[1].texts
    rows = list(validation_rows(val_sets, mixture.classes))
    assert {r["label"] for r in rows if r["source"] == "coarse"} <= {"hostile", "friendly|hostile"}


def test_val_unseen_leaves_out_validation_rows_like_training_rows(mixture_root):
    # A perturbation pair split across train and val, as DynaHate's are: selection must not score the half
    # whose partner was trained on.
    train_texts = [json.loads(line)["text"] for line in open(mixture_root / "exact" / "train.jsonl")]
    novel = ["the bridge opens in spring", "our choir sings on sundays", "a quiet walk by the river"]
    rows = [(novel[0], "friendly"), (f"{train_texts[0]} not", "friendly"), (novel[1], "hostile")]
    rows += [(train_texts[5].upper(), "hostile"), (novel[2], "friendly")]
    with open(mixture_root / "exact" / "val.jsonl", "w") as f:
        f.writelines(json.dumps({"text": text, "label": label}) + "\n" for text, label in rows)
    plain = read_mixture(load_mixture(str(mixture_root / "mixture.toml")), str(mixture_root))[1][0]
    unseen_mixture = load_mixture(_write(mixture_root, "unseen.toml", MIXTURE.replace(
        'licence = "CC-BY-4.0"', 'licence = "CC-BY-4.0"\nval_unseen = true')))
    train_sets, val_sets = read_mixture(unseen_mixture, str(mixture_root))
    assert len(plain) == 5 and len(train_sets[0]) == 64
    assert val_sets[0].texts == novel and val_sets[0].label_ids.tolist() == [0, 1, 0]


def test_export_data_writes_the_chosen_sources_validation_rows(mixture_root, tmp_path, capsys):
    out = tmp_path / "new" / "val.jsonl"
    args = ["--mixture", str(mixture_root / "mixture.toml"), "--data_root", str(mixture_root), "--output", str(out)]
    assert export_data.main(args + ["--sources", "exact"]) == 0
    rows = [json.loads(line) for line in open(out)]
    assert len(rows) == 32 and {r["source"] for r in rows} == {"exact"}
    assert "32 validation rows of exact" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--sources", "exact,twitter"], "--sources ['twitter'] are not in"),
        (["--data_root", "/no/such/root"], "--data_root /no/such/root: no such folder"),
        (["--mixture", "/no/such.toml"], "--mixture /no/such.toml: no such file"),
    ],
)
def test_export_data_fails_on_bad_flags_with_one_error_line(mixture_root, tmp_path, capsys, flags, message):
    args = ["--mixture", str(mixture_root / "mixture.toml"), "--data_root", str(mixture_root)]
    out = tmp_path / "val.jsonl"
    # Later flags win: each case replaces one of the good ones.
    assert export_data.main(args + ["--output", str(out)] + flags) == 2
    assert_one_error_line(capsys.readouterr().err, "flaxmodel.training.export_data", message)
    assert not out.exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('hostile = ["hostile"]', 'hostile = ["rude"]'), "not among classes"),
        (lambda t: t.replace('weight = 0.5', 'weight = 0.5\nwieght = 1'), "unknown keys"),
        (lambda t: t.replace('reader = "table"', 'reader = "excel"', 1), "reader must be one of"),
        (lambda t: t.replace('val_fraction = 0.25', 'val_fraction = 0.25\nval = "x.csv"'), "one of val"),
        (lambda t: t.replace("weight = 1.0", "weight = 0"), "weight must be positive"),
        (lambda t: t.replace('licence = "MIT"', 'licence = "GPL"'), "licence must be one of"),
        (lambda t: t.replace('use = "default"', 'use = "anything"'), "'use' must be one of"),
        (lambda t: t.replace('licence = "MIT"\n', 'licence = "MIT"\nevaluate_only = true\nval_unseen = true\n'), "trains on none"),
        (lambda t: t.replace('licence = "MIT"\n', 'licence = "MIT"\nevaluate_only = true\n').replace(
            'licence = "CC-BY-4.0"\n', 'licence = "CC-BY-4.0"\nevaluate_only = true\n'), "nothing to train on"),
    ],
)
def test_a_bad_mixture_fails_naming_the_source(mixture_root, edit, message):
    path = mixture_root / "bad.toml"
    path.write_text(edit(MIXTURE))
    with pytest.raises(ConfigError, match=message):
        load_mixture(str(path))


def test_a_default_model_never_trains_on_a_source_whose_licence_forbids_it(mixture_root, tmp_path, capsys):
    restricted = MIXTURE.replace('licence = "MIT"', 'licence = "CC-BY-NC-4.0"')
    (mixture_root / "nc.toml").write_text(restricted)
    args = ["--mixture", str(mixture_root / "nc.toml"), "--data_root", str(mixture_root), "--output", str(tmp_path / "run")]
    assert main(args) == 2
    assert_one_error_line(capsys.readouterr().err, "flaxmodel-train", "coarse (CC-BY-NC-4.0)")
    assert not (tmp_path / "run").exists()
    # A research model may train on it; a default one may still select on its validation rows.
    assert load_mixture(_write(mixture_root, "research.toml", restricted.replace('use = "default"', 'use = "research"'))).use == "research"
    selecting = restricted.replace('licence = "CC-BY-NC-4.0"', 'licence = "CC-BY-NC-4.0"\nevaluate_only = true')
    train, val = read_mixture(load_mixture(_write(mixture_root, "select.toml", selecting)), str(mixture_root))
    assert [s.name for s in train] == ["exact"] and [s.name for s in val] == ["exact", "coarse"]


def test_a_default_model_learns_only_from_teachers_trained_for_one(mixture_root, tmp_path, capsys, tiny_checkpoint):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_checkpoint("bert", labels=("friendly", "hostile")), teacher)
    args = ["--mixture", str(mixture_root / "mixture.toml"), "--data_root", str(mixture_root)]
    args += ["--output", str(tmp_path / "run"), "--teachers", str(teacher)]
    assert main(args) == 2
    assert_one_error_line(capsys.readouterr().err, "flaxmodel-train", f"{teacher} (undeclared)")
    (teacher / "training_data.json").write_text(json.dumps({"use": "research", "sources": []}))
    assert main(args) == 2
    assert f"{teacher} (research)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _write(folder, name: str, text: str) -> str:
    (folder / name).write_text(text)
    return str(folder / name)


def test_the_default_mixture_trains_only_on_permissive_sources():
    from flaxmodel.training.mixture_file import PERMISSIVE_LICENCES

    mixture = load_mixture(DEFAULT_MIXTURE)
    assert mixture.use == "default"
    trained = {s.name: s.licence for s in mixture.sources if not s.evaluate_only}
    assert set(trained.values()) <= set(PERMISSIVE_LICENCES)
    assert {"tweeteval_hate", "tweeteval_offensive"}.isdisjoint(trained)  # no licence stated: selection only


def test_a_label_without_mapping_fails_before_training(mixture_root):
    path = mixture_root / "bad.toml"
    path.write_text(MIXTURE.replace('spam = []\n', ""))
    with pytest.raises(DataError, match=r"coarse.*\['spam'\] have no mapping"):
        read_mixture(load_mixture(str(path)), str(mixture_root))


def test_the_research_mixture_is_the_default_plus_research_sources_and_says_so():
    from flaxmodel.training.mixture_file import PERMISSIVE_LICENCES

    default = load_mixture(DEFAULT_MIXTURE)
    research = load_mixture(DEFAULT_MIXTURE.replace("default.toml", "research.toml"))
    assert research.use == "research"
    shared = research.sources[: len(default.sources)]
    assert [s.name for s in shared] == [s.name for s in default.sources]
    # TweetEval (no licence stated) only selects a default model; a research model trains on it.
    tweets = {"tweeteval_hate", "tweeteval_offensive"}
    assert [s for s in shared if s.name not in tweets] == [s for s in default.sources if s.name not in tweets]
    assert not any(s.evaluate_only for s in shared if s.name in tweets)
    added = {s.name: s for s in research.sources[len(default.sources) :]}
    assert set(added) == {"dynahate", "conan_hate", "conan_counter", "qian_responses"}
    assert not any(s.licence in PERMISSIVE_LICENCES or s.evaluate_only for s in added.values())
    assert added["dynahate"].val_unseen  # its perturbation pairs straddle train and dev


def test_the_default_mixtures_are_valid():
    mixture = load_mixture(DEFAULT_MIXTURE)
    assert mixture.classes == ("hate", "offensive", "neither")
    assert "functional" in {s.name for s in mixture.sources}
    tweets = load_mixture(DEFAULT_MIXTURE.replace("default.toml", "default_tweets.toml"))
    assert [s.name for s in tweets.sources] == [s.name for s in mixture.sources]
    assert [s.labels for s in tweets.sources] == [s.labels for s in mixture.sources]
    doubled = load_mixture(DEFAULT_MIXTURE.replace("default.toml", "default_davidson_hatemoji_x2.toml"))
    changed = {s.name: s.weight for s, d in zip(doubled.sources, mixture.sources) if s != d}
    assert changed == {"davidson": 2.0, "hatemoji_build": 2.0} and doubled.use == "default"


def test_a_mixture_extends_another_and_overrides_its_keys(mixture_root):
    (mixture_root / "more.toml").write_text(
        'extends = "mixture.toml"\n[sources.coarse]\nweight = 2.0\n[sources.coarse.labels]\nrude = ["hostile"]\n'
        'unsure = []\nspam = []\n'
    )
    base, more = load_mixture(str(mixture_root / "mixture.toml")), load_mixture(str(mixture_root / "more.toml"))
    assert (more.classes, more.seed) == (base.classes, base.seed)
    assert more.sources[0] == base.sources[0]
    coarse = more.sources[1]
    assert (coarse.weight, coarse.text_field, coarse.val_fraction) == (2.0, "post", 0.25)
    # A label mapping is replaced whole, not merged label by label.
    assert coarse.labels == {"rude": ("hostile",), "unsure": (), "spam": ()}
    (mixture_root / "loop.toml").write_text('extends = "loop.toml"\n')
    with pytest.raises(ConfigError, match="loops back"):
        load_mixture(str(mixture_root / "loop.toml"))


def test_an_epoch_samples_weight_times_each_source():
    rows = epoch_rows([10, 4], [0.5, 2.5], seed=0, epoch=0)
    first, second = rows[rows < 10], rows[rows >= 10]
    assert len(first) == 5 and len(set(first)) == 5
    # 2.5 x 4 rows: every row twice, then two more.
    assert len(second) == 10 and np.bincount(second - 10, minlength=4).min() == 2
    np.testing.assert_array_equal(rows, epoch_rows([10, 4], [0.5, 2.5], seed=0, epoch=0))
    assert not np.array_equal(rows, epoch_rows([10, 4], [0.5, 2.5], seed=0, epoch=1))


def test_raising_a_whole_weight_samples_the_same_distinct_rows():
    # What lets a run of default_davidson_hatemoji_x2.toml reuse a default.toml run's cached teacher
    # probabilities: the cache is keyed by the distinct texts sampled, and the other sources' draws stay put.
    for epoch in (0, 1):
        once = epoch_rows([10, 4, 6], [1.0, 0.5, 1.0], seed=0, epoch=epoch)
        twice = epoch_rows([10, 4, 6], [2.0, 0.5, 2.0], seed=0, epoch=epoch)
        assert len(twice) == len(once) + 16
        np.testing.assert_array_equal(np.unique(twice), np.unique(once))


def test_partial_label_loss():
    logits = jnp.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    one_hot = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(
        partial_label_loss(logits, one_hot),
        optax.softmax_cross_entropy_with_integer_labels(logits, jnp.array([1, 0])),
        rtol=1e-6,
    )
    probabilities = _softmax(logits)
    partial = jnp.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    expected = -np.log([probabilities[0, 1] + probabilities[0, 2], 1.0])
    np.testing.assert_allclose(partial_label_loss(logits, partial), expected, rtol=1e-5, atol=1e-6)


def _softmax(x):
    e = np.exp(np.asarray(x) - np.asarray(x).max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_training_on_a_mixture_reports_every_source(mixture_root, base_folder, tmp_path):
    settings = {k: v for k, v in STANDARD.items() if k != "labels"}
    config = dict(settings, mixture=str(mixture_root / "mixture.toml"), data_root=str(mixture_root))
    result = train(TrainConfig(output=str(tmp_path / "mix"), model=base_folder, **config), progress=False)
    epochs = [r for r in map(json.loads, open(tmp_path / "mix" / "metrics.jsonl")) if r["event"] == "epoch"]
    last = epochs[-1]
    assert set(last["val_sources"]) == {"exact", "coarse"}
    # The exact source is scored by macro F1; the coarse one's label sets overlap, so by accuracy.
    assert last["val_sources"]["exact"]["score"] == last["val_sources"]["exact"]["macro_f1"]
    assert last["val_sources"]["coarse"]["score"] == last["val_sources"]["coarse"]["accuracy"]
    assert last["val_macro_f1"] == pytest.approx(np.mean([s["score"] for s in last["val_sources"].values()]))
    assert last["val_sources"]["exact"]["macro_f1"] >= 0.9 and result.best_folder


def test_epoch_share_shortens_every_epoch_and_keeps_the_mixtures_proportions(mixture_root, base_folder, tmp_path):
    settings = {k: v for k, v in STANDARD.items() if k != "labels"}
    config = dict(settings, mixture=str(mixture_root / "mixture.toml"), data_root=str(mixture_root), epochs=1)
    full = prepare(TrainConfig(output=str(tmp_path / "full"), model=base_folder, **config))
    half = prepare(TrainConfig(output=str(tmp_path / "half"), model=base_folder, epoch_share=0.5, **config))
    assert half.source_weights == tuple(w / 2 for w in full.source_weights)
    assert len(half.epoch_rows(0)) == pytest.approx(len(full.epoch_rows(0)) / 2, abs=len(full.source_sizes))
    assert half.total_steps < full.total_steps
    with pytest.raises(ConfigError, match="--epoch_share must be in"):
        TrainConfig(output=str(tmp_path), epoch_share=0.0, **config).validate()


def test_mixture_and_train_flags_exclude_each_other(mixture_root, tmp_path):
    with pytest.raises(ConfigError, match="either --train"):
        TrainConfig(output=str(tmp_path), train="x.jsonl", mixture=str(mixture_root / "mixture.toml")).validate()
    with pytest.raises(ConfigError, match="needs --data_root"):
        TrainConfig(output=str(tmp_path), mixture=str(mixture_root / "mixture.toml")).validate()


def test_functional_suite_halves_use_different_templates():
    train_cases, val_cases = functional.cases("train"), functional.cases("val")
    assert not {c.text for c in train_cases} & {c.text for c in val_cases}
    assert {c.functionality for c in train_cases} == {c.functionality for c in val_cases}
    for case in train_cases + val_cases:
        assert set(case.label.split("|")) <= {"hate", "offensive", "neither"}
        assert "{" not in case.text
    hateful = {c.functionality for c in val_cases if c.label == "hate"}
    assert {"derogation", "threat", "dehumanisation", "slur"} <= hateful
    assert functional.cases("val") == val_cases


def test_functional_unnamed_group_cases_name_no_protected_group():
    unnamed = [c for c in functional.cases("train") if c.functionality.startswith("unnamed_group")]
    assert {c.target for c in unnamed} == set(functional.UNNAMED)
    named = [g.lower() for g in functional.PROTECTED]
    assert not [c.text for c in unnamed if any(g in c.text.lower() for g in named)]
