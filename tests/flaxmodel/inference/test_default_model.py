"""The bundled default moderation model: small, offline, and sensible on obvious sentences."""

from __future__ import annotations

import json
import os

import pytest

from flaxmodel import load_classifier
from flaxmodel.ckpts.default_model import MINILM_PACKAGE, default_model_path
from flaxmodel.ckpts.adapters import ADAPTER_CONFIG
from tests.fixtures import no_network

MAX_ARTIFACT_BYTES = 5 * 1024 * 1024

FRIENDLY = (
    "Have a wonderful day, thank you so much for your help!",
    "The weather is beautiful this morning, going for a walk",
    "Congrats to the team on winning the championship",
)
# Small talk: the default trained with ConvAbuse's non-abusive messages as "offensive or neither" called
# every one of these offensive (0.92-0.99).
SMALL_TALK = (
    "ok",
    "hello",
    "Thanks for your help",
    "Have a wonderful day!",
    "see you tomorrow",
    "what time is it?",
)
PROFANE_INSULTS = (
    "shut up you stupid bitch",
    "you are a worthless piece of shit",
)
# Attacks on a group for who they are (the sentences the previous, Davidson-only default called
# "neither"; the model card lists the cases it still gets wrong).
HATEFUL = (
    "Those people are animals and should be kept out of our neighbourhood.",
    "Women like her shouldn't be allowed to speak in public.",
    # Missed by the 2026-12-03 default (offensive, hate 0.36); back with the teacher's half.
    "Their kind should not be allowed to vote.",
)
# Hate the default labels offensive, not hate (its card, "Known failure modes"; both from the bundled
# sample): still not let through as neither.  Strict, so a model that gets one right fails this test and
# the sentence moves to HATEFUL.
MISSED_HATE = (
    "I hate all of them, they're vermin.",
    "I can't stand that whole group, they ruin everything they touch.",
)


@pytest.fixture(scope="module")
def classifier():
    with no_network("the default model"):
        yield load_classifier(max_length=64)


def test_default_model_is_a_small_adapter_over_the_installed_encoder():
    folder = default_model_path()
    size = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))
    assert size <= MAX_ARTIFACT_BYTES
    with open(os.path.join(folder, ADAPTER_CONFIG)) as f:
        assert json.load(f)["base_model"]["package"] == MINILM_PACKAGE


def test_default_model_labels_hate_offensive_neither(classifier):
    assert classifier.labels == ("hate", "offensive", "neither")


def test_friendly_sentences_are_neither(classifier):
    assert classifier.predict(FRIENDLY) == ["neither"] * len(FRIENDLY)


def test_small_talk_is_neither(classifier):
    assert classifier.predict(SMALL_TALK) == ["neither"] * len(SMALL_TALK)


def test_profane_insults_are_offensive(classifier):
    assert classifier.predict(PROFANE_INSULTS) == ["offensive"] * len(PROFANE_INSULTS)


def test_attacks_on_groups_are_hate(classifier):
    assert classifier.predict(HATEFUL) == ["hate"] * len(HATEFUL)


def test_hate_in_disguise_is_read_as_the_plain_words(classifier):
    # Spaced-out and leetspeak key words halved the hate labels kept before the folder declared the
    # steps that undo them (benchmarks/obfuscation.py).
    plain = HATEFUL[0]
    disguised = (
        "Those people are a n i m a l s and should be kept out of our neighbourhood.",
        "Those people are 4n1m4l5 and should be kept out of our neighbourhood.",
    )
    assert classifier.predict(disguised) == classifier.predict([plain]) * 2 == ["hate"] * 2
    assert classifier.predict_proba(disguised) == pytest.approx(classifier.predict_proba([plain] * 2))


def test_missed_hate_is_not_neither(classifier):
    assert "neither" not in classifier.predict(MISSED_HATE)


@pytest.mark.xfail(strict=True, reason="the default calls them offensive; its card lists them as failures")
def test_missed_hate_is_hate(classifier):
    assert "hate" in classifier.predict(MISSED_HATE)


def test_the_default_model_recommends_a_hate_threshold():
    from flaxmodel import recommended_thresholds

    thresholds = recommended_thresholds()
    assert set(thresholds) == {"hate"} and 0.5 < thresholds["hate"] < 1.0
