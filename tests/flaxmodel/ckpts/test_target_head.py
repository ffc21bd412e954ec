"""A model folder's target-group head: loaded beside any checkpoint, named by its own table, optional.

A folder with ``target_head.json`` and ``target_head.safetensors`` predicts target
scores that are exactly the head's two layers over the first-token state, while the
class scores stay those of the folder without it; every broken head file fails
at load, naming the file and what to fix.
"""

from __future__ import annotations

import json
import math
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from flaxmodel import CheckpointError, load_checkpoint, load_classifier, resolve_model
from flaxmodel.ckpts.target_head import TARGET_HEAD_CONFIG, TARGET_HEAD_WEIGHTS
from flaxmodel.core.model import hidden_states
from flaxmodel.inference.predictor import COMPUTE_DTYPES
from flaxmodel.inference.padding import pad_batch
from tests.fixtures import SHORT_TEXTS, TARGET_CATEGORIES, add_target_head


@pytest.fixture
def with_head(tiny_checkpoint, tmp_path):
    folder = shutil.copytree(tiny_checkpoint("bert"), tmp_path / "model")
    return folder, add_target_head(folder)


def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))


def _first_token_states(classifier, texts, dtype=jnp.float32, params=None) -> np.ndarray:
    """The encoder's first-token states of ``texts`` (float64), under ``params`` or the classifier's own."""
    sequences = classifier.tokenizer.encode(texts)
    ids, mask = pad_batch(sequences, len(texts), max(len(s) for s in sequences), classifier.pad_id)
    params = classifier.params if params is None else params
    states = hidden_states(params, ids, mask, config=classifier.config, dtype=dtype, first_token_only=True)
    return np.asarray(states, np.float64)


def _head_scores(head, states):
    """The head's two layers in float64: sigmoid(gelu(states W1 + b1) W2 + b2)."""
    hidden = _gelu(states @ head["dense"]["kernel"] + head["dense"]["bias"])
    return 1 / (1 + np.exp(-(hidden @ head["out_proj"]["kernel"] + head["out_proj"]["bias"])))


def test_target_scores_are_the_heads_layers_over_the_first_token(with_head, tiny_checkpoint):
    folder, head = with_head
    classifier = load_classifier(str(folder), precision="float32")
    plain = load_classifier(str(tiny_checkpoint("bert")), precision="float32")
    assert classifier.targets == TARGET_CATEGORIES and plain.targets == ()
    texts = list(SHORT_TEXTS)
    scores = classifier.predict_targets(texts)
    assert scores.shape == (len(texts), len(TARGET_CATEGORIES))
    states = _first_token_states(classifier, texts, params=load_checkpoint(str(folder)).params)
    np.testing.assert_allclose(scores, _head_scores(head, states), atol=1e-5)
    # The classes are untouched by the head: the same probabilities as the folder without it.
    np.testing.assert_array_equal(classifier.predict_proba(texts), plain.predict_proba(texts))
    assert plain.predict_targets(texts).shape == (len(texts), 0)


def test_the_head_is_part_of_the_model_identity(with_head, tiny_checkpoint):
    folder, _ = with_head
    ref, plain = resolve_model(str(folder)), resolve_model(str(tiny_checkpoint("bert")))
    assert ref.weights_hash != plain.weights_hash
    assert ref.targets == TARGET_CATEGORIES
    assert ref.target_thresholds == tuple((c, 0.5) for c in TARGET_CATEGORIES)
    assert plain.targets == () and plain.target_thresholds == ()


def test_training_leaves_the_head_out(with_head):
    folder, _ = with_head
    checkpoint = load_checkpoint(str(folder), target_head=False)
    assert checkpoint.config.targets == () and "target_head" not in checkpoint.params
    assert load_checkpoint(str(folder)).config.targets == TARGET_CATEGORIES


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_reduced_precisions_keep_the_head_in_float32(with_head, precision):
    folder, head = with_head
    texts = list(SHORT_TEXTS)
    classifier = load_classifier(str(folder), precision=precision)
    reduced = classifier.predict_targets(texts)
    # The encoder runs reduced, the head reads its states in float32: 1e-7 off the head's layers in float64
    # here, where a head computed in bfloat16 is 3e-3 off (whose error hides inside the encoder's own, 0.008
    # for bfloat16 and 0.03 for int8, in a comparison with float32's scores).
    states = _first_token_states(classifier, texts, COMPUTE_DTYPES[precision])
    np.testing.assert_allclose(reduced, _head_scores(head, states), atol=1e-5)
    reference = load_classifier(str(folder), precision="float32").predict_targets(texts)
    np.testing.assert_allclose(reduced, reference, atol=0.05)


def _edit_spec(folder, **changes):
    path = folder / TARGET_HEAD_CONFIG
    spec = json.loads(path.read_text())
    spec.update(changes)
    path.write_text(json.dumps(spec))


def _edit_tensors(folder, edit):
    path = str(folder / TARGET_HEAD_WEIGHTS)
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda f: (f / TARGET_HEAD_WEIGHTS).unlink(), f"without {TARGET_HEAD_WEIGHTS}"),
        (lambda f: _edit_spec(f, format="something-else"), "format is 'something-else'"),
        (lambda f: _edit_spec(f, thresholds={"race": 0.5}), "thresholds must name exactly the categories"),
        (lambda f: _edit_spec(f, thresholds={c: 1.5 for c in TARGET_CATEGORIES}), "not probabilities"),
        (lambda f: _edit_spec(f, categories=["race", "race", "gender"]), "distinct categories"),
        (lambda f: _edit_spec(f, hidden_size=9), "wrong shape"),
        (lambda f: _edit_tensors(f, lambda t: t.update(extra=np.zeros(2, np.float32))), "unexpected tensors ['extra']"),
        (lambda f: _edit_tensors(f, lambda t: t.pop("out_proj.bias")), "missing tensors ['out_proj.bias']"),
        (lambda f: (f / TARGET_HEAD_CONFIG).write_text("{not json"), TARGET_HEAD_CONFIG),
    ],
)
def test_a_broken_head_fails_at_load_naming_what_to_fix(with_head, breakage, message):
    folder, _ = with_head
    breakage(folder)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(str(folder))
    assert message in str(raised.value)
