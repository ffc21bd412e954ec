"""The preprocessing a model folder declares: what each step does, and that the folder's tokenizer, its
reference and its identity carry it."""

from __future__ import annotations

import json
import shutil

import pytest

from flaxmodel import CheckpointError, Tokenizer, minilm_path, resolve_model
from flaxmodel.inference.preprocessing import (
    PREPROCESSING_FILE,
    Preprocessing,
    emoji_names,
    join_spaced_letters,
    undo_leetspeak,
)
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


@pytest.mark.parametrize(
    "text, expected",
    [
        ("they are v e r m i n.", "they are vermin."),
        ("S U B H U M A N, all of them", "SUBHUMAN, all of them"),
        ("pure s.c.u.m!", "pure scum!"),
        ("r-a-t-s and p*i*g*s", "rats and pigs"),
        # Three letters or fewer, or separators that change within the run, are left alone: too often real.
        ("u r a legend", "u r a legend"),
        ("W T F", "W T F"),
        ("a.b-c d", "a.b-c d"),
        ("a  b  c  d", "a  b  c  d"),
    ],
)
def test_spaced_out_words_are_joined(text, expected):
    assert join_spaced_letters(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("they should be k1lled", "they should be killed"),
        ("p4r@sites, all of them", "parasites, all of them"),
        ("1d10t5 and h3ll0", "idiots and hello"),
        ("J3ws", "Jews"),
        # Numbers, names and links are not words in disguise.
        ("mp3 4chan 10th 1st covid19 gr8 2020 x1", "mp3 4chan 10th 1st covid19 gr8 2020 x1"),
        ("@us3r #WWG1WGA http://t.co/A3rM5x", "@us3r #WWG1WGA http://t.co/A3rM5x"),
    ],
)
def test_leetspeak_reads_as_letters(text, expected):
    assert undo_leetspeak(text) == expected


def test_an_unknown_step_is_refused_naming_the_known_ones():
    known = r"\['emoji_names', 'join_spaced_letters', 'undo_leetspeak'\]"
    with pytest.raises(ConfigError, match=r"unknown preprocessing steps \['stem'\]; known: " + known):
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
