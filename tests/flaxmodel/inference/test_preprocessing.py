"""The preprocessing a model folder declares: what each step does, and that the folder's tokenizer, its
reference and its identity carry it."""

from __future__ import annotations

import json
import shutil

import pytest

from flaxmodel import CheckpointError, Tokenizer, minilm_path, resolve_model
from flaxmodel.inference.preprocessing import PREPROCESSING_FILE, Preprocessing, emoji_names
from flaxmodel.errors import ConfigError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("they are 🐒🐒", "they are monkey monkey"),
        ("🐍 first", "snake first"),
        ("end🐍", "end snake"),
        ("a 👨‍👩‍👧 b", "a family man woman girl b"),
        ("x❤️y", "x red heart y"),
        ("plain ascii stays as it is  ", "plain ascii stays as it is  "),
        ("café, no emoji", "café, no emoji"),
    ],
)
def test_emoji_become_their_names_as_words(text, expected):
    assert emoji_names(text) == expected


def test_an_unknown_step_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown preprocessing steps \['stem'\]; known: \['emoji_names'\]"):
        Preprocessing(("stem",))


def test_the_default_tokenizer_sees_emoji_only_once_the_folder_declares_the_step(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(minilm_path(), folder)
    plain = Tokenizer.from_folder(str(folder), 32)
    unk = plain.tokenizer.token_to_id("[UNK]")
    assert unk in plain.encode(["they are 🐒"])[0]  # every emoji is [UNK] to this vocabulary
    (folder / PREPROCESSING_FILE).write_text(json.dumps({"steps": ["emoji_names"]}))
    declared = Tokenizer.from_folder(str(folder), 32)
    assert declared.encode(["they are 🐒"]) == plain.encode(["they are monkey"])
    block = declared.encode_block(["they are 🐒"], 8, 4)
    assert unk not in block.tokens.tolist()


def test_the_reference_lists_the_steps_and_its_hash_tells_the_models_apart(tiny_checkpoint, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint("bert"), folder)
    before = resolve_model(str(folder))
    (folder / PREPROCESSING_FILE).write_text(json.dumps({"steps": ["emoji_names"]}))
    after = resolve_model(str(folder))
    assert (before.preprocessing, after.preprocessing) == ((), ("emoji_names",))
    assert after.weights_hash != before.weights_hash  # same weights, another model: the identity differs
    (folder / PREPROCESSING_FILE).write_text(json.dumps({"steps": ["stem"]}))
    with pytest.raises(CheckpointError, match=PREPROCESSING_FILE):
        resolve_model(str(folder))
