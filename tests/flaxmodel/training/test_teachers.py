"""Distillation: the targets are the teachers' mean probabilities, and a student trained on them learns them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flaxmodel import load_classifier
from flaxmodel.errors import ConfigError
from flaxmodel.training import main, train
from flaxmodel.training import teachers as teachers_module
from flaxmodel.training.teachers import cached_probabilities, load_teachers
from tests.fixtures import SHORT_TEXTS
from tests.flaxmodel.training.conftest import LABELS, assert_one_error_line


def _counting(teachers, calls):
    """The teachers, each counting the texts it scores into ``calls`` as (teacher index, texts)."""
    for i, teacher in enumerate(teachers):
        score = teacher.predict_proba
        teacher.predict_proba = lambda texts, i=i, score=score: calls.append((i, len(texts))) or score(texts)
    return teachers


def _probabilities(folder, texts):
    return load_classifier(folder, max_length=16, precision="float32").predict_proba(texts)


def test_the_targets_are_the_teachers_mean_probabilities(tiny_checkpoint, tmp_path):
    folders = [str(tiny_checkpoint("bert", labels=LABELS, seed=seed)) for seed in (0, 1)]
    teachers = load_teachers(folders, LABELS, max_length=16)
    each = [_probabilities(f, SHORT_TEXTS) for f in folders]
    assert np.abs(each[0] - each[1]).max() > 1e-3
    targets = cached_probabilities(teachers, SHORT_TEXTS, np.arange(len(SHORT_TEXTS)), str(tmp_path / "cache"))
    np.testing.assert_allclose(targets, (each[0] + each[1]) / 2, atol=1e-6)


def test_teacher_probabilities_are_cached_by_chunk_and_reused(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(teachers_module, "CHUNK_ROWS", 3)
    folder = str(tiny_checkpoint("bert", labels=LABELS))
    teachers = load_teachers([folder], LABELS, max_length=16)
    texts = list(SHORT_TEXTS) * 2
    rows = np.array([7, 0, 2, 2, 5, 9, 4, 1])
    cache = tmp_path / "cache"
    calls = []
    first = cached_probabilities(_counting(teachers, calls), texts, rows, str(cache))
    (teacher_dir,) = cache.iterdir()
    assert calls == [(0, 3), (0, 3), (0, 1)]
    assert sorted(p.name for p in teacher_dir.glob("part-*")) == [f"part-0000{i}.npy" for i in range(3)]
    sampled = np.unique(rows)
    np.testing.assert_allclose(first[sampled], _probabilities(folder, [texts[i] for i in sampled]), atol=1e-6)
    assert np.isnan(np.delete(first, sampled, axis=0)).all()

    # A rerun (or a resumed run) scores only the chunk an interruption lost.
    (teacher_dir / "part-00001.npy").unlink()
    calls.clear()
    np.testing.assert_array_equal(cached_probabilities(teachers, texts, rows, str(cache)), first)
    assert calls == [(0, 3)]

    # Other texts are another key: every chunk is scored again.
    calls.clear()
    other = cached_probabilities(teachers, [t + "!" for t in texts], rows, str(cache))
    assert calls == [(0, 3), (0, 3), (0, 1)] and not np.allclose(other[sampled], first[sampled])


def test_a_run_that_adds_a_teacher_scores_only_the_new_one(tiny_checkpoint, tmp_path):
    folders = [str(tiny_checkpoint("bert", labels=LABELS, seed=seed)) for seed in (0, 1)]
    texts, rows, cache = list(SHORT_TEXTS), np.arange(len(SHORT_TEXTS)), str(tmp_path / "cache")
    cached_probabilities(load_teachers(folders[:1], LABELS, max_length=16), texts, rows, cache)
    calls = []
    both = _counting(load_teachers(folders, LABELS, max_length=16), calls)
    targets = cached_probabilities(both, texts, rows, cache)
    assert calls == [(1, len(texts))]
    mean = (_probabilities(folders[0], texts) + _probabilities(folders[1], texts)) / 2
    np.testing.assert_allclose(targets, mean, atol=1e-6)


def test_a_teacher_of_other_classes_is_refused_before_training(
    tiny_checkpoint, fixture_data, base_folder, tmp_path, capsys
):
    teacher = str(tiny_checkpoint("bert", labels=("a", "b", "c")))
    with pytest.raises(ConfigError, match="predicts \\['a', 'b', 'c'\\], the run trains \\['friendly', 'hostile'\\]"):
        load_teachers([teacher], LABELS, max_length=16)
    args = ["--train", str(fixture_data / "train.jsonl"), "--output", str(tmp_path / "run"), "--model", base_folder]
    assert main(args + ["--labels", ",".join(LABELS), "--teachers", teacher]) == 2
    assert_one_error_line(capsys.readouterr().err, "flaxmodel-train", f"--teachers {teacher} predicts")
    assert not (tmp_path / "run" / "checkpoints").exists()


def _flipped(path, out) -> str:
    """The rows of ``path`` with the other label: a teacher trained on them contradicts every label."""
    with open(path) as f, open(out, "w") as g:
        for row in map(json.loads, f):
            g.write(json.dumps({**row, "label": LABELS[1 - LABELS.index(row["label"])]}) + "\n")
    return str(out)


def test_a_student_learns_its_teachers_at_distill_weight_1_and_the_labels_at_0(make_config, fixture_data, tmp_path):
    # No validation data in any run: best/ is the last epoch's model, not the one nearest the true labels.
    flipped = _flipped(fixture_data / "train.jsonl", tmp_path / "flipped.jsonl")
    teacher = train(make_config("teacher", train=flipped, val=None), progress=False)
    texts = [json.loads(line)["text"] for line in open(fixture_data / "val.jsonl")]
    truth = np.array([LABELS.index(json.loads(line)["label"]) for line in open(fixture_data / "val.jsonl")])
    teacher_model = load_classifier(teacher.best_folder, max_length=16, precision="float32")
    taught = teacher_model.predict_proba(texts)
    assert (taught.argmax(axis=1) != truth).mean() >= 0.9

    accuracy = {}
    for weight in (0.0, 1.0):
        config = make_config(f"student{weight}", val=None, teachers=(teacher.best_folder,), distill_weight=weight)
        result = train(config, progress=False)
        student = load_classifier(result.best_folder, max_length=16, precision="float32").predict_proba(texts)
        accuracy[weight] = (student.argmax(axis=1) == truth).mean()
        # The student's folder names its teacher by weights, so the model card and licence checks can.
        record = json.loads((tmp_path / f"student{weight}" / "best" / "training_data.json").read_text())
        assert record["teachers"] == [
            {"model": teacher_model.identity, "folder": teacher.best_folder, "use": "undeclared", "distill_weight": weight}
        ]
    assert accuracy[0.0] >= 0.9 and accuracy[1.0] <= 0.1
