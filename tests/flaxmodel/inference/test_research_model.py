"""The research model (flaxmodel/research): declared as research-only, and it loads and labels offline."""

from __future__ import annotations

import json
import os

import pytest

from flaxmodel import load_classifier, resolve_model
from flaxmodel.training.mixture_file import PERMISSIVE_LICENCES
from tests.flaxmodel.inference.test_default_model import FRIENDLY, HATEFUL, MAX_ARTIFACT_BYTES, PROFANE_INSULTS

FOLDER = os.path.join(os.path.dirname(__file__), "..", "..", "..", "flaxmodel", "research")


def test_its_folder_says_it_is_a_research_model_and_why():
    with open(os.path.join(FOLDER, "training_data.json")) as f:
        declared = json.load(f)
    assert declared["use"] == "research"
    restricted = {s["name"] for s in declared["sources"] if s["trained"] and s["licence"] not in PERMISSIVE_LICENCES}
    assert restricted == {"tweeteval_hate", "tweeteval_offensive", "dynahate", "conan_hate", "conan_counter", "qian_responses"}
    with open(os.path.join(FOLDER, "README.md")) as f:
        assert "NOT FOR COMMERCIAL USE" in f.readline()
    assert sum(os.path.getsize(os.path.join(FOLDER, n)) for n in os.listdir(FOLDER)) <= MAX_ARTIFACT_BYTES
    # What the jobs read to warn whoever runs it.
    assert resolve_model(FOLDER).research_only and resolve_model().use == "default"


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(FOLDER, max_length=64)


def test_it_labels_hate_insults_and_friendly_sentences_and_names_targets(classifier):
    # "Their kind should not be allowed to vote." it calls neither: a failure its card lists.
    hateful = [s for s in HATEFUL if not s.startswith("Their kind")]
    assert classifier.predict(hateful) == ["hate"] * len(hateful)
    assert classifier.predict(FRIENDLY) == ["neither"] * len(FRIENDLY)
    assert classifier.predict(PROFANE_INSULTS) == ["offensive"] * len(PROFANE_INSULTS)
    assert classifier.targets == ("race", "religion", "gender", "sexuality", "gender_identity", "disability", "origin")
