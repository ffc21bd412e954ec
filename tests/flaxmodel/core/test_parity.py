"""Our Flax models compute what transformers' PyTorch models compute on the same checkpoint.

The reference is transformers itself (torch, test-only), reading the same folder
and tokenizing with its own tokenizer; batches mix short padded texts with texts
truncated at the maximum length.  Bounds: float32 within 1e-4 (measured below
1e-5 on logits and hidden states); the bfloat16 and int8 paths within their
documented bounds of float32 on probabilities (``calibration.PROBABILITY_BOUNDS``;
measured up to about 5e-3 and 1e-2 on the tiny models), and bfloat16 within 5e-2
relative error per token on MiniLM's hidden states (measured about 2e-2).  Run
with ``-s`` to see the measured differences.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from flaxmodel import apply, hidden_states, load_checkpoint, load_classifier
from flaxmodel.inference.calibration import PROBABILITY_BOUNDS
from flaxmodel.inference.tokenizer import Tokenizer, load_tokenizer
from tests.fixtures import ARCHITECTURES, TEXTS, hf_tokenizer

FLOAT32_BOUND = 1e-4
BFLOAT16_RELATIVE_HIDDEN_BOUND = 5e-2
# Shorter than the long sample texts, longer than the short ones.
TRUNCATE_AT = 24
MINILM_TRUNCATE_AT = 32


def hf_batch(tokenizer, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """transformers' padded and truncated ids and attention mask for the sample texts."""
    batch = tokenizer(list(TEXTS), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    ids, mask = batch["input_ids"].astype(np.int32), batch["attention_mask"].astype(np.int32)
    lengths = mask.sum(axis=1)
    # The batch must exercise both padding and truncation.
    assert lengths.min() < max_length and lengths.max() == max_length
    return ids, mask


def unpadded(ids: np.ndarray, mask: np.ndarray) -> list[list[int]]:
    return [row[m > 0].tolist() for row, m in zip(ids, mask)]


def torch_logits(folder, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long()).logits.numpy()


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def minilm_reference(minilm_folder):
    """transformers' ids, mask and last hidden states of MiniLM on the sample texts."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_folder)
    ids, mask = hf_batch(tokenizer, MINILM_TRUNCATE_AT)
    model = transformers.AutoModel.from_pretrained(minilm_folder).eval()
    with torch.no_grad():
        hidden = model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long())
    return ids, mask, hidden.last_hidden_state.numpy()


@pytest.fixture(scope="module")
def minilm_checkpoint(minilm_folder):
    return load_checkpoint(minilm_folder)


def test_minilm_tokens_match_transformers(minilm_folder, minilm_reference):
    ids, mask, _ = minilm_reference
    encoder = Tokenizer(load_tokenizer(minilm_folder), MINILM_TRUNCATE_AT)
    assert encoder.encode(TEXTS) == unpadded(ids, mask)


def test_minilm_hidden_states_match_transformers(minilm_reference, minilm_checkpoint):
    ids, mask, expected = minilm_reference
    ours = np.asarray(hidden_states(minilm_checkpoint.params, ids, mask, config=minilm_checkpoint.config))
    real = mask > 0
    diff = np.abs(ours - expected)[real].max()
    print(f"\nMiniLM float32 max |hidden state diff| on real tokens: {diff:.2e}")
    assert diff < FLOAT32_BOUND


def test_minilm_bfloat16_hidden_states_stay_close(minilm_reference, minilm_checkpoint):
    ids, mask, expected = minilm_reference
    ours = hidden_states(minilm_checkpoint.params, ids, mask, config=minilm_checkpoint.config, dtype=jnp.bfloat16)
    ours = np.asarray(ours, dtype=np.float32)
    real = mask > 0
    relative = np.linalg.norm(ours - expected, axis=-1)[real] / np.linalg.norm(expected, axis=-1)[real]
    print(f"\nMiniLM bfloat16 max relative hidden state error per token: {relative.max():.2e}")
    assert relative.max() < BFLOAT16_RELATIVE_HIDDEN_BOUND


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_logits_match_transformers(tiny_checkpoint, architecture, weights):
    folder = tiny_checkpoint(architecture, safetensors=weights == "safetensors")
    ids, mask = hf_batch(hf_tokenizer(folder, architecture), TRUNCATE_AT)
    # The reference reads the safetensors twin: same seed, same weights.
    expected = torch_logits(tiny_checkpoint(architecture), ids, mask)
    checkpoint = load_checkpoint(folder)
    ours = np.asarray(apply(checkpoint.params, ids, mask, config=checkpoint.config))
    diff = np.abs(ours - expected).max()
    print(f"\n{architecture} ({weights}) float32 max |logit diff|: {diff:.2e}")
    assert diff < FLOAT32_BOUND


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_classifier_probabilities_match_transformers(tiny_checkpoint, architecture, precision):
    folder = tiny_checkpoint(architecture)
    ids, mask = hf_batch(hf_tokenizer(folder, architecture), TRUNCATE_AT)
    expected = softmax(torch_logits(folder, ids, mask))
    classifier = load_classifier(folder, precision=precision, max_length=TRUNCATE_AT)
    assert classifier.tokenizer.encode(TEXTS) == unpadded(ids, mask)
    probabilities = classifier.predict_proba(TEXTS)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    diff = np.abs(probabilities - expected).max()
    print(f"\n{architecture} {precision} max |probability diff|: {diff:.2e}")
    assert diff < FLOAT32_BOUND + PROBABILITY_BOUNDS[precision]


@pytest.mark.parametrize("field, wrong", [("hidden_act", "gelu"), ("layer_norm_eps", 1e-12)])
def test_parity_bound_catches_a_wrong_activation_or_epsilon(tiny_checkpoint, field, wrong):
    # The RoBERTa fixture uses gelu_new and eps 1e-3: getting either wrong must break parity.
    folder = tiny_checkpoint("roberta")
    ids, mask = hf_batch(hf_tokenizer(folder, "roberta"), TRUNCATE_AT)
    expected = torch_logits(folder, ids, mask)
    checkpoint = load_checkpoint(folder)
    assert getattr(checkpoint.config, field) != wrong
    config = dataclasses.replace(checkpoint.config, **{field: wrong})
    ours = np.asarray(apply(checkpoint.params, ids, mask, config=config))
    assert np.abs(ours - expected).max() > 3 * FLOAT32_BOUND


def test_multi_label_checkpoint_gives_independent_sigmoids(tiny_checkpoint):
    folder = tiny_checkpoint("bert", problem_type="multi_label_classification")
    ids, mask = hf_batch(hf_tokenizer(folder, "bert"), TRUNCATE_AT)
    expected = 1.0 / (1.0 + np.exp(-torch_logits(folder, ids, mask)))
    classifier = load_classifier(folder, max_length=TRUNCATE_AT)
    assert classifier.config.multi_label
    probabilities = classifier.predict_proba(TEXTS)
    np.testing.assert_allclose(probabilities, expected, atol=FLOAT32_BOUND)
    assert np.abs(probabilities.sum(axis=1) - 1.0).max() > 0.1
