"""Tokenizer: no hidden padding, truncation that keeps the special tokens, windows
that cover long texts, long texts tokenized only as far as the output needs yet
exactly as if whole, and the legacy vocabulary files tokenizing like tokenizer.json.
"""

from __future__ import annotations

import json
import shutil

import pytest
import transformers

from flaxmodel.inference.tokenizer import Tokenizer, TokenizerError, load_tokenizer
from tests.fixtures import hf_tokenizer

# Casing, accents, punctuation, digits, emoji, CJK and repeated spaces.
AWKWARD_TEXTS = [
    "Hello World!",
    "Café déjà vu, naïve façade",
    "u r sooo   dumb!!! 1000%",
    "I ❤️ this 😂😂",
    "東京 is big",
    "",
    "e-mail me @ bob@example.com #spam",
]
LONG_TEXT = " ".join(f"word{i}" for i in range(200))


@pytest.fixture(scope="module")
def minilm_encoder(minilm_folder) -> Tokenizer:
    return Tokenizer(load_tokenizer(minilm_folder), 16)


@pytest.fixture(scope="module")
def minilm_hf(minilm_folder):
    return transformers.AutoTokenizer.from_pretrained(minilm_folder)


def test_tokenizer_json_padding_is_switched_off(minilm_folder, minilm_encoder, minilm_hf):
    stored = json.loads((open(f"{minilm_folder}/tokenizer.json", encoding="utf-8").read()))
    assert stored["padding"]["strategy"] == {"Fixed": 128}
    ids = minilm_encoder.encode(["hello world", "you are great"])
    assert ids == minilm_hf(["hello world", "you are great"])["input_ids"]
    assert [len(i) for i in ids] == [4, 5]


def test_truncation_keeps_cls_and_sep(minilm_encoder, minilm_hf):
    (ids,) = minilm_encoder.encode([LONG_TEXT])
    assert len(ids) == 16
    assert ids[0] == minilm_hf.cls_token_id and ids[-1] == minilm_hf.sep_token_id
    assert ids == minilm_hf(LONG_TEXT, truncation=True, max_length=16)["input_ids"]


def test_roberta_truncation_keeps_bos_and_eos(tiny_checkpoint):
    folder = tiny_checkpoint("roberta")
    encoder = Tokenizer.from_folder(str(folder), 10)
    vocab = load_tokenizer(str(folder)).get_vocab()
    long_ids, short_ids = encoder.encode([LONG_TEXT, "ok"])
    assert len(long_ids) == 10 and len(short_ids) < 10
    for ids in (long_ids, short_ids):
        assert ids[0] == vocab["<s>"] and ids[-1] == vocab["</s>"]


def test_windows_overlap_by_stride_and_cover_every_token(minilm_encoder):
    stride = 4
    content = minilm_encoder.tokenizer.encode(LONG_TEXT, add_special_tokens=False).ids
    (windows,) = minilm_encoder.encode_windows([LONG_TEXT], stride=stride, max_windows=1000)
    assert not windows.truncated
    assert windows.num_tokens == len(content) + 2
    inner = [w[1:-1] for w in windows.ids]
    assert all(len(w) <= minilm_encoder.max_length for w in windows.ids)
    assert all(w[0] == windows.ids[0][0] and w[-1] == windows.ids[0][-1] for w in windows.ids)
    for previous, current in zip(inner, inner[1:]):
        assert previous[-stride:] == current[:stride]
    rebuilt = inner[0] + [token for window in inner[1:] for token in window[stride:]]
    assert rebuilt == content


def test_short_text_is_one_window_like_encode(minilm_encoder):
    (windows,) = minilm_encoder.encode_windows(["hello world"], stride=4, max_windows=3)
    assert windows.ids == minilm_encoder.encode(["hello world"])
    assert not windows.truncated


def test_max_windows_caps_and_marks_truncated(minilm_encoder):
    (windows,) = minilm_encoder.encode_windows([LONG_TEXT], stride=4, max_windows=3)
    assert len(windows.ids) == 3
    assert windows.truncated
    (first,) = minilm_encoder.encode([LONG_TEXT])
    assert windows.ids[0] == first


def test_window_arguments_are_checked(minilm_encoder):
    with pytest.raises(ValueError, match="stride"):
        minilm_encoder.encode_windows(["x"], stride=minilm_encoder.content_length, max_windows=2)
    with pytest.raises(ValueError, match="max_windows"):
        minilm_encoder.encode_windows(["x"], stride=0, max_windows=0)


def test_max_length_without_room_for_text_is_refused(minilm_folder):
    with pytest.raises(TokenizerError, match="max_length 2"):
        Tokenizer(load_tokenizer(minilm_folder), 2)


def test_vocab_txt_fallback_matches_tokenizer_json(minilm_folder, tmp_path):
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(f"{minilm_folder}/{name}", tmp_path / name)
    expected = Tokenizer(load_tokenizer(minilm_folder), 64).encode(AWKWARD_TEXTS + [LONG_TEXT])
    assert Tokenizer(load_tokenizer(str(tmp_path)), 64).encode(AWKWARD_TEXTS + [LONG_TEXT]) == expected


def test_vocab_json_and_merges_fallback_matches_tokenizer_json(tiny_checkpoint, tmp_path):
    folder = tiny_checkpoint("roberta")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(folder / name, tmp_path / name)
    expected = Tokenizer.from_folder(str(folder), 64).encode(AWKWARD_TEXTS + [LONG_TEXT])
    assert Tokenizer.from_folder(str(tmp_path), 64).encode(AWKWARD_TEXTS + [LONG_TEXT]) == expected


def test_saved_tokenizer_reloads_without_padding(minilm_encoder, tmp_path):
    minilm_encoder.save(str(tmp_path))
    reloaded = Tokenizer.from_folder(str(tmp_path), minilm_encoder.max_length)
    assert reloaded.encode(AWKWARD_TEXTS) == minilm_encoder.encode(AWKWARD_TEXTS)
    assert len(reloaded.encode(["hi"])[0]) == 3


def test_unreadable_tokenizer_json_is_named(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match=rf"{tmp_path}/tokenizer\.json: cannot read tokenizer"):
        load_tokenizer(str(tmp_path))


# --- long texts: only the prefix the output can hold is tokenized ----------------------------

# Long texts the prefix cut must not change: prose, runs of spaces and newlines, contractions
# and accents glued to neighbours, no whitespace at all, CJK, and words of over 100 characters
# (one WordPiece [UNK] each, so the prefix has to grow several times).
BOUNDED_TEXTS = {
    "prose": " ".join([LONG_TEXT] + AWKWARD_TEXTS) * 4,
    "spacing": "\n\n".join(f"line {i}:  you're\tnot   welcome\r\nhere" for i in range(300)),
    "glued": "".join(f"x're{i}don't,I'll-e\u0301té😂東京\u3000" for i in range(400)),
    "cjk": "東京は大きい。" * 800,
    "huge_words": " ".join(f"{i:04d}" + "a" * 116 for i in range(400)),
}
WINDOW_SETTINGS = [(0, 1), (4, 2), (4, 5), (0, 9)]  # (stride, max_windows)


@pytest.fixture(scope="module", params=["wordpiece", "bpe"])
def encoder_and_hf(request, minilm_folder, minilm_hf, tiny_checkpoint):
    if request.param == "wordpiece":
        return Tokenizer(load_tokenizer(minilm_folder), 16), minilm_hf
    folder = tiny_checkpoint("roberta")
    return Tokenizer.from_folder(str(folder), 16), hf_tokenizer(folder, "roberta")


class _RecordingTokenizer:
    """Passes calls on to a tokenizer, noting the length of every text it is asked to encode."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.lengths: list[int] = []

    def encode_batch(self, texts, **kwargs):
        self.lengths += [len(t) for t in texts]
        return self._tokenizer.encode_batch(texts, **kwargs)

    def encode_batch_fast(self, texts, **kwargs):
        self.lengths += [len(t) for t in texts]
        return self._tokenizer.encode_batch_fast(texts, **kwargs)


@pytest.mark.parametrize("stride, max_windows", WINDOW_SETTINGS)
def test_long_text_windows_are_the_first_windows_of_the_whole_text(encoder_and_hf, stride, max_windows):
    encoder, _ = encoder_and_hf
    names = list(BOUNDED_TEXTS)
    texts = ["hello world", *BOUNDED_TEXTS.values()]
    whole = encoder.encode_windows(texts, stride, max_windows=10**6)
    bounded = encoder.encode_windows(texts, stride, max_windows)
    assert not any(w.truncated for w in whole)
    assert bounded[0] == whole[0]
    specials = len(encoder.prefix) + len(encoder.suffix)
    for name, full, cut in zip(names, whole[1:], bounded[1:]):
        assert cut.ids == full.ids[:max_windows], name
        assert cut.truncated == (len(full.ids) > max_windows), name
        if cut.truncated:
            covered = (max_windows - 1) * (encoder.content_length - stride) + encoder.content_length
            assert covered + specials < cut.num_tokens < full.num_tokens, name


def test_ids_kept_from_a_prefix_are_the_first_ids_of_the_whole_text(encoder_and_hf):
    # The windows use only the first of the kept ids, so check them all, at many prefix lengths.
    encoder, _ = encoder_and_hf
    for name, text in BOUNDED_TEXTS.items():
        whole = encoder.tokenizer.encode(text, add_special_tokens=False).ids
        for need in range(1, 80):
            (ids,), (complete,) = encoder._leading_ids([text], need)
            assert not complete and len(ids) >= need, (name, need)
            assert ids == whole[: len(ids)], (name, need)


def test_long_text_truncation_matches_transformers(encoder_and_hf):
    encoder, hf = encoder_and_hf
    texts = list(BOUNDED_TEXTS.values())
    assert encoder.encode(texts) == hf(texts, truncation=True, max_length=encoder.max_length)["input_ids"]


def test_a_huge_text_is_tokenized_a_short_prefix_at_a_time(minilm_encoder, monkeypatch):
    recording = _RecordingTokenizer(minilm_encoder.tokenizer)
    monkeypatch.setattr(minilm_encoder, "tokenizer", recording)
    text = " ".join(f"word{i % 1000}" for i in range(2_000_000))
    (windows,) = minilm_encoder.encode_windows([text], stride=4, max_windows=3)
    (ids,) = minilm_encoder.encode([text])
    assert windows.truncated and len(windows.ids) == 3 and windows.ids[0] == ids
    # One prefix per call, of at most 8 characters per token needed (35 for the windows).
    assert len(recording.lengths) == 2 and max(recording.lengths) <= 35 * 8


def test_a_text_without_word_breaks_stops_growing_at_the_character_bound(minilm_encoder, monkeypatch):
    recording = _RecordingTokenizer(minilm_encoder.tokenizer)
    monkeypatch.setattr(minilm_encoder, "tokenizer", recording)
    (windows,) = minilm_encoder.encode_windows(["a" * 10_000_000], stride=4, max_windows=3)
    (ids,) = minilm_encoder.encode(["a" * 10_000_000])
    assert windows.ids == [ids] == [minilm_encoder.encode(["a" * 101])[0]]  # [CLS] [UNK] [SEP]
    assert windows.truncated
    # Prefixes double up to 256 characters per token needed (35, then 14), so add up to less than twice that.
    assert sum(recording.lengths) < 2 * 256 * (35 + 14)
