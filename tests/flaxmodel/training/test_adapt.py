"""Adapting (flaxmodel.training.adapt) on the tiny random BERT: what a user relies on when adapting to their labels.

The tiny model's classes are hate, offensive and neither; the user's rows say ``bad`` or ``ok`` about
friendly and hostile word lists.  Runs are kept small (one rate, two epochs) so each takes seconds.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil

import numpy as np
import pytest

from flaxmodel import load_classifier, load_checkpoint
from flaxmodel.core.lora import LoraConfig
from flaxmodel.errors import ConfigError, DataError
from flaxmodel.training import AdaptConfig, adapt
from flaxmodel.training.adapt_data import read_reviewed_rows
from flaxmodel.training.adapt_figures import choose_thresholds, macro_f1
from flaxmodel.training.adapt_units import work_folder
from tests.flaxmodel.training.conftest import FRIENDLY, HOSTILE, _write
from tests.flaxmodel.training.test_soup import _adapter_folder
from tests.fixtures import TARGET_CATEGORIES, add_target_head

# Words of the tiny tokenizer's vocabulary in neither word list.
OTHER = ("rambling", "post", "keeps", "going", "long", "honestly", "much", "so", "ok", "this", "is", "what")
SMALL = dict(epochs=2, learning_rates=(1e-2,), batch_size=16, max_length=16, folds=2, lora_rank=4, anchors=0)


def _rows(path, count: int, seed: int, labels=("ok", "bad")) -> str:
    _write(path, count, seed, labels)
    return str(path)


@pytest.fixture()
def start(tiny_checkpoint) -> str:
    return str(tiny_checkpoint("bert"))


def _config(tmp_path, start, rows, name="out", **overrides) -> AdaptConfig:
    settings = dict(SMALL, model=start, train=rows, label_map="bad=hate|offensive,ok=neither", output=str(tmp_path / name))
    return AdaptConfig(**{**settings, **overrides})


def test_partial_labels_train_their_sum_and_the_folder_scores_as_trained(tmp_path, start):
    rows = _rows(tmp_path / "rows.jsonl", 320, seed=1)
    outcome = adapt(_config(tmp_path, start, rows), progress=False)
    held_texts = [outcome.rows.texts[i] for i in outcome.held]
    bad = outcome.rows.labels[outcome.held] == outcome.names.index("bad")
    # The held-out rows' "bad" probability (hate + offensive) separates the labels after, not before.
    after_bad = outcome.after[:, :2].sum(axis=1)
    assert after_bad[bad].mean() - after_bad[~bad].mean() > 0.5
    before_bad = outcome.before[:, :2].sum(axis=1)
    assert abs(before_bad[bad].mean() - before_bad[~bad].mean()) < 0.3
    assert outcome.chosen["macro_f1"] > 0.9 and len(outcome.held) == 64
    # The written folder is the selected model: its probabilities are the held-out ones the run scored.
    classifier = load_classifier(str(tmp_path / "out"), precision="float32")
    np.testing.assert_allclose(classifier.predict_proba(held_texts), outcome.after, atol=1e-4)
    assert classifier.labels == ("hate", "offensive", "neither")
    thresholds = json.loads(open(tmp_path / "out" / "thresholds.json").read())["thresholds"]
    assert set(thresholds) == {"hate", "offensive"}


def test_an_adapter_start_exports_one_adapter_over_the_same_base(tmp_path, tiny_checkpoint):
    base = str(tiny_checkpoint("bert", head=False))
    checkpoint = load_checkpoint(base, labels=("hate", "offensive", "neither"))
    lora = LoraConfig(rank=2, alpha=4, targets=("query", "value", "intermediate"))
    start = _adapter_folder(tmp_path / "start", base, checkpoint, lora, 1)
    rows = _rows(tmp_path / "rows.jsonl", 320, seed=2)
    outcome = adapt(_config(tmp_path, start, rows), progress=False)
    saved = json.loads(open(tmp_path / "out" / "adapter_config.json").read())
    assert saved["rank"] == 2 + SMALL["lora_rank"] and saved["base_model"] == json.loads(open(os.path.join(start, "adapter_config.json")).read())["base_model"]
    classifier = load_classifier(str(tmp_path / "out"), precision="float32")
    np.testing.assert_allclose(classifier.predict_proba([outcome.rows.texts[i] for i in outcome.held]), outcome.after, atol=1e-4)


def _mean_offensive(folder: str, texts: list[str]) -> float:
    return float(load_classifier(folder, precision="float32").predict_proba(texts)[:, 1].mean())


def test_distillation_keeps_a_class_the_map_never_names(tmp_path, start):
    rows = _rows(tmp_path / "rows.jsonl", 320, seed=3)
    # Texts unlike the labeled ones (words of neither list): what the user has but did not label.
    rng = random.Random(4)
    other = [" ".join(rng.choices(OTHER, k=rng.randint(2, 6))) for _ in range(400)]
    (tmp_path / "unlabeled.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in other[:200]))
    before = _mean_offensive(start, other[200:])
    # "offensive" is named by no label, so the labeled rows push it down everywhere unless the unlabeled
    # texts hold it where the starting model had it.  The tiny random encoder tells the two kinds of text
    # apart poorly, and each epoch draws unlabeled texts a quarter as many as its rows, so some drift remains
    # (measured 0.17 against 0.35 without distillation).
    kept = dict(label_map="bad=hate,ok=neither", unlabeled=str(tmp_path / "unlabeled.jsonl"), learning_rates=(3e-3,))
    adapt(_config(tmp_path, start, rows, "kept", **kept, distill_weight=3.0), progress=False)
    adapt(_config(tmp_path, start, rows, "free", **kept, distill_weight=0.0), progress=False)
    drift_kept = abs(_mean_offensive(str(tmp_path / "kept"), other[200:]) - before)
    drift_free = abs(_mean_offensive(str(tmp_path / "free"), other[200:]) - before)
    assert drift_kept < 0.2 and drift_kept < drift_free / 2, (before, drift_kept, drift_free)


def test_the_kept_target_head_scores_as_before_on_the_adapted_encoder(tmp_path, start):
    shutil.copytree(start, tmp_path / "start")
    add_target_head(tmp_path / "start", hidden=16, seed=7)
    start = str(tmp_path / "start")
    rows = _rows(tmp_path / "rows.jsonl", 320, seed=8)
    texts = [json.loads(line)["text"] for line in open(rows)]
    before = load_classifier(start, precision="float32").predict_targets(texts)
    drift = {}
    for name, weight in (("kept", 3.0), ("free", 0.0)):
        adapt(_config(tmp_path, start, rows, name, distill_weight=weight), progress=False)
        adapted = load_classifier(str(tmp_path / name), precision="float32")
        assert adapted.targets == TARGET_CATEGORIES
        drift[name] = float(np.abs(adapted.predict_targets(texts) - before).mean())
    # The head itself is the start's, byte for byte; only what it reads changed.
    for file in ("target_head.json", "target_head.safetensors"):
        assert (tmp_path / "kept" / file).read_bytes() == (tmp_path / "start" / file).read_bytes()
    # The labels move the top layers either way; held, the target scores move a fraction as much (measured
    # 0.013 against 0.049).
    assert drift["kept"] < drift["free"] / 3, drift


def _rows_with_groups(path, count: int, seed: int) -> list[dict]:
    """Rows whose hostile half attacks "religion" exactly when it has the word "post" (a CSV with a targets column)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        bad = i % 2 == 1
        words = rng.choices(HOSTILE if bad else FRIENDLY, k=rng.randint(2, 5)) + (["post"] if i % 4 == 3 else [])
        rows.append({"text": " ".join(words), "label": "bad" if bad else "ok", "targets": "religion" if i % 4 == 3 else ""})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["text", "label", "targets"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_rows_that_name_target_groups_refit_the_head_and_its_thresholds(tmp_path, start):
    shutil.copytree(start, tmp_path / "start")
    add_target_head(tmp_path / "start", hidden=16, seed=7)
    start = str(tmp_path / "start")
    rows = _rows_with_groups(tmp_path / "rows.csv", 320, seed=9)
    outcome = adapt(_config(tmp_path, start, str(tmp_path / "rows.csv"), learning_rates=(3e-2,), epochs=4), progress=False)
    texts = [r["text"] for r in rows]
    attacked = np.array([r["targets"] == "religion" for r in rows])
    religion = TARGET_CATEGORIES.index("religion")

    def religion_scores(folder: str, texts: list[str]) -> np.ndarray:
        return load_classifier(folder, precision="float32").predict_targets(texts)[:, religion]

    def separation(folder: str) -> float:
        scores = religion_scores(folder, texts)
        return float(scores[attacked].mean() - scores[~attacked].mean())

    # The start's random head cannot tell; the re-fitted one learned the groups (measured 0.41).
    assert separation(str(tmp_path / "out")) > 0.3 > abs(separation(start)) * 10
    # Religion's threshold is re-chosen on the held-out rows: the best F1 of any cut of the folder's own
    # scores there (computed here by brute force).  The groups no row attacks keep the start's.
    head = json.loads((tmp_path / "out" / "target_head.json").read_text())
    chosen = head["per_category"]
    held_scores = religion_scores(str(tmp_path / "out"), [texts[i] for i in outcome.held])
    held_attacked = attacked[outcome.held]

    def f1(cut: float) -> float:
        named = held_scores >= cut
        return 2 * (named & held_attacked).sum() / (named.sum() + held_attacked.sum())

    assert chosen["religion"]["chosen_on"] == "held-out rows" and chosen["religion"]["attacks"] == held_attacked.sum() >= 5
    assert chosen["religion"]["f1"] == pytest.approx(max(f1(c) for c in held_scores), abs=1e-6)
    assert f1(head["thresholds"]["religion"]) == pytest.approx(chosen["religion"]["f1"], abs=1e-6)
    assert {c: head["thresholds"][c] for c in ("race", "gender")} == {"race": 0.5, "gender": 0.5}
    assert outcome.target_head == chosen


def test_an_unknown_group_a_missing_column_or_no_head_to_refit_are_refused_before_training(tmp_path, start):
    shutil.copytree(start, tmp_path / "start")
    add_target_head(tmp_path / "start")
    path = tmp_path / "rows.csv"
    path.write_text("text,label,targets\nstupid hate,bad,religion|caste\nlovely day,ok,\n")
    with pytest.raises(DataError, match=r"1 rows name target groups outside race, religion, gender .*caste"):
        adapt(_config(tmp_path, str(tmp_path / "start"), str(path)), progress=False)
    # A column asked for by name must be there, and a head must be there to re-fit.
    with pytest.raises(DataError, match="--target_field groups: no row names a target group in that column"):
        adapt(_config(tmp_path, str(tmp_path / "start"), str(path), target_field="groups"), progress=False)
    with pytest.raises(ConfigError, match="--target_field targets: the starting model has no target-group head"):
        adapt(_config(tmp_path, start, str(path), target_field="targets"), progress=False)
    assert not os.path.exists(work_folder(str(tmp_path / "out")))


def test_a_diverging_run_stops_saying_what_to_lower_and_writes_no_folder(tmp_path, start):
    rows = _rows(tmp_path / "rows.jsonl", 60, seed=10)
    with pytest.raises(ConfigError, match=r"the loss is not finite after \d+ steps at learning rate 1e\+30; lower --learning_rates"):
        adapt(_config(tmp_path, start, rows, learning_rates=(1e30,)), progress=False)
    assert not os.path.exists(tmp_path / "out")


def test_a_new_head_labels_with_its_own_names(tmp_path, start):
    rows = _rows(tmp_path / "rows.jsonl", 160, seed=5, labels=("fine", "spam"))
    outcome = adapt(_config(tmp_path, start, rows, label_map="", new_head=("spam", "fine"), epochs=4), progress=False)
    assert outcome.before is None and outcome.folds == 2 and outcome.chosen["macro_f1"] > 0.9
    classifier = load_classifier(str(tmp_path / "out"), precision="float32")
    assert classifier.labels == ("spam", "fine")
    assert classifier.predict(["stupid hate nobody", "lovely great thanks"]) == ["spam", "fine"]


def test_an_interrupted_run_resumes_to_the_same_model(tmp_path, start):
    rows = _rows(tmp_path / "rows.jsonl", 60, seed=6)
    config = _config(tmp_path, start, rows)
    assert adapt(config, stop_after_units=2, progress=False) is None
    assert len([n for n in os.listdir(work_folder(config.output)) if n.endswith(".npz")]) == 2
    assert not os.path.exists(config.output)
    with pytest.raises(Exception, match="interrupted adapting run with other settings"):
        adapt(_config(tmp_path, start, rows, epochs=3), progress=False)
    resumed = adapt(config, progress=False)
    assert not os.path.exists(work_folder(config.output))
    straight = adapt(_config(tmp_path, start, rows, "straight"), progress=False)
    np.testing.assert_array_equal(resumed.after, straight.after)
    a = load_classifier(config.output, precision="float32").predict_proba(["nice weather today"])
    b = load_classifier(str(tmp_path / "straight"), precision="float32").predict_proba(["nice weather today"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_reviewed_rows_weigh_what_their_stratum_stands_for(tmp_path):
    # Stratum "flagged": 4 sampled at p = 0.5 (8 records), 2 reviewed; "rest": 3 sampled at p = 0.1 (30 records), 3 reviewed.
    lines = [("a", "bad", "flagged", 0.5), ("b", "", "flagged", 0.5), ("c", "ok", "flagged", 0.5), ("d", None, "flagged", 0.5)]
    lines += [("e", "ok", "rest", 0.1), ("f", "ok", "rest", 0.1), ("g", "bad", "rest", 0.1)]
    path = tmp_path / "review.jsonl"
    path.write_text("".join(json.dumps({"text": t, "human_label": h, "review_reason": r, "inclusion_probability": p}) + "\n" for t, h, r, p in lines))
    rows = read_reviewed_rows(AdaptConfig(output="x", reviewed=str(path)), ("bad", "ok"))
    assert rows.texts == ["a", "c", "e", "f", "g"] and rows.sizes == {"flagged": 8, "rest": 30}
    np.testing.assert_allclose(rows.weights, [4, 4, 10, 10, 10])


def test_reviewers_target_groups_come_with_their_rows_and_the_models_own_targets_column_is_not_read(tmp_path):
    from flaxmodel.training.adapt_targets import row_groups

    # "targets" is the model's own output column in a review file; reviewers write human_targets.
    lines = [("a", "bad", "religion|race", "gender"), ("b", None, "race", "race"), ("c", "ok", "", "race"), ("d", "bad", None, "race")]
    path = tmp_path / "review.jsonl"

    def record(text, human, groups, model_groups) -> dict:
        row = {"text": text, "human_label": human, "review_reason": "rest", "inclusion_probability": 0.5, "targets": model_groups}
        return row if groups is None else {**row, "human_targets": groups}

    path.write_text("".join(json.dumps(record(*line)) + "\n" for line in lines))
    rows = read_reviewed_rows(AdaptConfig(output="x", reviewed=str(path)), ("bad", "ok"))
    assert rows.texts == ["a", "c", "d"] and rows.groups == ["religion|race", "", None]
    groups = row_groups(rows, ("race", "religion", "gender"))
    np.testing.assert_array_equal(groups[:2], [[1, 1, 0], [0, 0, 0]])
    assert np.isnan(groups[2]).all()
    # No reviewer named a group: the head is kept.
    path.write_text("".join(json.dumps(record(t, h, "", m)) + "\n" for t, h, _, m in lines))
    assert read_reviewed_rows(AdaptConfig(output="x", reviewed=str(path)), ("bad", "ok")).groups is None


def test_weighted_macro_f1_leaves_out_labels_the_rows_lack():
    true, predicted = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    # Label 2 has no row: averaging its zero in would give (2/3 + 4/5 + 0) / 3.
    assert macro_f1(true, predicted, np.ones(4), 3) == pytest.approx((2 / 3 + 4 / 5) / 2)
    # Row 1 standing for 3 records: label 0 F1 = 2/(2+0+3), label 1 = 2*4/(2*4+3+0).
    assert macro_f1(true, predicted, np.array([1, 3, 1, 3]), 3) == pytest.approx((2 / 5 + 8 / 11) / 2)


def test_thresholds_count_a_flag_right_when_the_label_allows_its_class():
    label_map = {"bad": ("hate", "offensive"), "ok": ("neither",), "mild": ("offensive", "neither")}
    p = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    found = choose_thresholds(p, np.array([0, 1, 0, 1]), np.ones(4), label_map, ("hate", "offensive", "neither"), "neither", 0.9)
    # "mild" allows neither too, so only classes some benign-free label allows get thresholds.
    assert set(found) == {"hate", "offensive"}
    assert found["hate"]["threshold"] == 0.9 and found["hate"]["positives"] == 2.0
    heavy = choose_thresholds(p, np.array([0, 1, 0, 1]), np.array([1.0, 0.1, 1.0, 1.0]), label_map, ("hate", "offensive", "neither"), "neither", 0.9)
    # The false flag at 0.8 standing for a tenth of a record no longer stops the threshold at 0.9.
    assert heavy["hate"]["threshold"] == 0.7


def test_the_loss_weighs_each_reviewed_row_by_what_it_stands_for(tmp_path):
    import jax.numpy as jnp

    from flaxmodel.training.adapt import _targets
    from flaxmodel.training.adapt_data import AdaptRows
    from flaxmodel.training.adapt_run import Cache
    from flaxmodel.training.adapt_step import AdaptBatch, adapt_loss

    rows = AdaptRows(["a", "b", "c"], np.array([0, 1, 0]), ("bad", "ok"), np.array([4.0, 4.0, 10.0]), np.array(["f", "f", "r"], object), {"f": 8, "r": 10}, {})
    teacher = np.full((4, 3), 1 / 3, np.float32)
    cache = Cache([[1], [1], [1], [1]], [np.zeros((1, 2))] * 4, teacher, (16,), 0)
    label_map = {"bad": ("hate", "offensive"), "ok": ("neither",)}
    targets = _targets(rows, label_map, ("hate", "offensive", "neither"), cache, 1, None)
    # Reviewed rows keep their ratios (mean 1 over them); the unlabeled text weighs like an average row.
    np.testing.assert_allclose(targets.weights, [4 / 6, 4 / 6, 10 / 6, 1.0], rtol=1e-6)
    np.testing.assert_allclose(targets.soft[0], [0.5, 0.5, 0.0])
    logits = jnp.asarray([[2.0, 0.0, 1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0], [0.5, 0.2, 0.1]])
    batch = AdaptBatch(None, None, None, targets.allowed, targets.soft, targets.weights, targets.soft_targets, targets.said_targets)
    one = [targets[np.array([i])] for i in range(4)]
    per_row = [float(adapt_loss(logits[i : i + 1], AdaptBatch(None, None, None, t.allowed, t.soft, np.ones(1, np.float32), t.soft_targets, t.said_targets), 1.0)) for i, t in enumerate(one)]
    expected = np.dot(per_row, targets.weights) / targets.weights.sum()
    assert float(adapt_loss(logits, batch, 1.0)) == pytest.approx(expected, rel=1e-5)


def test_a_target_threshold_is_rechosen_with_the_rows_weights_and_needs_five_attacks():
    from flaxmodel.training.adapt_targets import refit_thresholds

    # Five attacks score 0.9 and five 0.5; five rows without score 0.6 between them.
    scores = np.repeat([0.9, 0.5, 0.6], 5)[:, None].astype(np.float32)
    groups = np.repeat([1.0, 1.0, 0.0], 5)[:, None].astype(np.float32)
    plain = refit_thresholds(scores, groups, np.ones(15), {"race": 0.3}, ("race",))["race"]
    # Unweighted, taking the 0.6s costs less than losing half the attacks: cut at 0.5 (F1 20/25).
    assert plain["threshold"] == 0.5 and plain["f1"] == pytest.approx(0.8) and plain["chosen_on"] == "held-out rows"
    # Each row without standing for ten records, flagging them costs more: cut at 0.9 (F1 10/15).
    heavy = refit_thresholds(scores, groups, np.repeat([1.0, 1.0, 10.0], 5), {"race": 0.3}, ("race",))["race"]
    assert heavy["threshold"] == pytest.approx(0.9) and heavy["f1"] == pytest.approx(2 / 3)
    # Four attacks are too few to choose from: the start's threshold stays.
    few = refit_thresholds(scores[6:], groups[6:], np.ones(9), {"race": 0.3}, ("race",))["race"]
    assert few == {"threshold": 0.3, "rows": 9, "attacks": 4, "chosen_on": "the starting model's"}
