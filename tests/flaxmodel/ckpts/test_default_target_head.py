"""The shipped default model's target head on plain sentences: an attack that names a group gets that group
(its score reaches the group's shipped threshold), and neutral sentences get no group at all.

The sentences were written for their meaning before the head was run on them, one plainly worded attack
per line naming one group; they are not picked from what the head happens to get right.
"""

from __future__ import annotations

import numpy as np
import pytest

from flaxmodel import load_classifier, resolve_model
from flaxmodel.ckpts.default_model import default_model_path
from tests.fixtures import no_network

ATTACKS = {
    "race": ("Black people are inferior to everyone else.", "I hate black people, they are all criminals."),
    "religion": ("All Muslims are terrorists and should be banned.", "I hate Muslims, their religion is evil."),
    "gender": ("Women are stupid and belong in the kitchen.", "I hate women, they are worthless."),
    "sexuality": ("Gay people are disgusting perverts.", "I hate gay people, being gay is a sickness."),
    "gender_identity": ("Trans people are disgusting freaks.", "I hate transgender people, they are mentally ill."),
    "disability": ("Disabled people are useless and a burden on everyone.", "I hate disabled people, they are worthless."),
    "origin": ("Immigrants are vermin and should be deported.", "I hate immigrants, they are parasites."),
}
NEUTRAL = (
    "The weather is lovely today.",
    "I made pasta for dinner last night.",
    "The train was ten minutes late this morning.",
    "Thanks for your help with the report!",
)


@pytest.fixture(scope="module")
def named():
    """Each sentence -> the groups the default's head names (score at or above the group's threshold)."""
    thresholds = dict(resolve_model(default_model_path()).target_thresholds)
    with no_network("the default model"):
        classifier = load_classifier(max_length=64)
    assert set(classifier.targets) == set(ATTACKS) == set(thresholds)
    texts = [t for pair in ATTACKS.values() for t in pair] + list(NEUTRAL)
    scores = classifier.predict_targets(texts)
    cut = np.array([thresholds[c] for c in classifier.targets])
    return {t: {c for c, hit in zip(classifier.targets, row >= cut) if hit} for t, row in zip(texts, scores)}


@pytest.mark.parametrize("group, text", [(g, t) for g, pair in ATTACKS.items() for t in pair])
def test_a_plain_attack_on_a_group_gets_that_group(named, group, text):
    assert group in named[text], named[text]


@pytest.mark.parametrize("text", NEUTRAL)
def test_neutral_sentences_get_no_group(named, text):
    assert named[text] == set()
