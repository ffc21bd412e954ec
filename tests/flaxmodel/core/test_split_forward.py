"""The forward pass split at a layer: the part below equals transformers' hidden states there, the part above
finishes it with the whole pass's logits (what adapting relies on to train the top layers over cached states)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from flaxmodel import apply, hidden_states, load_checkpoint
from tests.fixtures import ARCHITECTURES, hf_tokenizer

TEXTS = ("a short one", "a somewhat longer text that needs more tokens than the first")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_split_pass_matches_transformers_layer_by_layer(tiny_checkpoint, architecture):
    folder = tiny_checkpoint(architecture)
    batch = hf_tokenizer(folder, architecture)(list(TEXTS), padding=True, return_tensors="np")
    ids, mask = batch["input_ids"].astype(np.int32), batch["attention_mask"].astype(np.int32)
    checkpoint = load_checkpoint(str(folder))
    config, params = checkpoint.config, checkpoint.params
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask), output_hidden_states=True)
    expected_logits = out.logits.numpy()
    real = mask.astype(bool)
    for layer in range(config.num_layers):
        below = np.asarray(hidden_states(params, ids, mask, config=config, stop=layer))
        # transformers' hidden_states[k] is what enters layer k (index 0: the embeddings); padding rows aside.
        np.testing.assert_allclose(below[real], out.hidden_states[layer].numpy()[real], atol=1e-4)
        logits = np.asarray(apply(params, ids, mask, config=config, start=layer, hidden=below))
        np.testing.assert_allclose(logits, expected_logits, atol=1e-4)


def test_starting_above_the_given_layer_changes_the_logits(tiny_checkpoint):
    # The split must hand over at the same layer on both sides: a state one layer short gives other logits.
    folder = tiny_checkpoint("bert")
    checkpoint = load_checkpoint(str(folder))
    ids = np.array([[2, 7, 9, 11, 3]], np.int32)
    mask = np.ones_like(ids)
    full = np.asarray(apply(checkpoint.params, ids, mask, config=checkpoint.config))
    short = hidden_states(checkpoint.params, ids, mask, config=checkpoint.config, stop=0)
    wrong = np.asarray(apply(checkpoint.params, ids, mask, config=checkpoint.config, start=1, hidden=short))
    assert np.abs(wrong - full).max() > 1e-3
