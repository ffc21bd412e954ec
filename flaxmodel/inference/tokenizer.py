"""Tokenization with explicit truncation, windows and no hidden padding.

Wraps a ``tokenizers.Tokenizer`` read from ``tokenizer.json`` (fallback: built
from ``vocab.txt`` for WordPiece models or ``vocab.json`` + ``merges.txt`` for
byte-level BPE ones).  Any padding or truncation stored in ``tokenizer.json`` is
switched off: the MiniLM one pads every text to 128 tokens, which would make
every batch four times as expensive.  Padding to static shapes happens later, in
the predictor's bucket grid.  Texts longer than the model's maximum are either
truncated (``encode``) or split into overlapping windows (``encode_windows``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer
from tokenizers.processors import RobertaProcessing

from flaxmodel.ckpts import files
from flaxmodel.errors import TokenizerError

TOKENIZER_FILE = "tokenizer.json"


@dataclasses.dataclass(frozen=True)
class Windows:
    """Token ids of one text, one list per window, special tokens included."""

    ids: list[list[int]]
    num_tokens: int
    truncated: bool


class TextEncoder:
    def __init__(self, tokenizer: Tokenizer, max_length: int):
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.max_length = max_length
        # Learn the single-sequence template (e.g. [CLS] $A [SEP]) from a probe text.
        probe = tokenizer.encode("a", add_special_tokens=False).ids
        full = tokenizer.encode("a", add_special_tokens=True).ids
        start = next(i for i in range(len(full)) if full[i : i + len(probe)] == probe)
        self.prefix = full[:start]
        self.suffix = full[start + len(probe) :]
        self.content_length = max_length - len(self.prefix) - len(self.suffix)
        if self.content_length < 1:
            raise TokenizerError(f"max_length {max_length} leaves no room besides special tokens")

    @classmethod
    def from_folder(cls, folder: str, max_length: int) -> "TextEncoder":
        return cls(load_tokenizer(folder), max_length)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids with special tokens, truncated to ``max_length``."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        keep = self.content_length
        return [self.prefix + e.ids[:keep] + self.suffix for e in encodings]

    def encode_windows(self, texts: Sequence[str], stride: int, max_windows: int) -> list[Windows]:
        """Each text as windows of at most ``max_length`` tokens overlapping by ``stride``.

        A text needing more than ``max_windows`` windows keeps the first ones and is
        marked ``truncated``.
        """
        if not 0 <= stride < self.content_length:
            raise ValueError(f"stride must be in [0, {self.content_length}), got {stride}")
        if max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, got {max_windows}")
        size, step = self.content_length, self.content_length - stride
        out = []
        for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=False):
            ids = encoding.ids
            starts = range(0, max(len(ids) - stride, 1), step)
            kept = starts[:max_windows]
            out.append(
                Windows(
                    ids=[self.prefix + ids[s : s + size] + self.suffix for s in kept],
                    num_tokens=len(ids) + len(self.prefix) + len(self.suffix),
                    truncated=len(starts) > max_windows,
                )
            )
        return out

    def save(self, folder: str) -> None:
        files.write_bytes(files.join(folder, TOKENIZER_FILE), self.tokenizer.to_str().encode())


def load_tokenizer(folder: str) -> Tokenizer:
    path = files.join(folder, TOKENIZER_FILE)
    if files.exists(path):
        try:
            return Tokenizer.from_str(files.read_bytes(path).decode("utf-8"))
        except Exception as err:  # tokenizers raises bare Exception on malformed JSON
            raise TokenizerError(f"{path}: cannot read tokenizer ({err})") from None
    vocab_txt = files.join(folder, "vocab.txt")
    if files.exists(vocab_txt):
        return _wordpiece(folder, vocab_txt)
    vocab_json, merges = files.join(folder, "vocab.json"), files.join(folder, "merges.txt")
    if files.exists(vocab_json) and files.exists(merges):
        return _byte_level_bpe(vocab_json, merges)
    raise TokenizerError(
        f"{folder}: no tokenizer; expected tokenizer.json, vocab.txt, or vocab.json + merges.txt"
    )


def _tokenizer_config(folder: str) -> dict:
    path = files.join(folder, "tokenizer_config.json")
    return json.loads(files.read_bytes(path)) if files.exists(path) else {}


def _wordpiece(folder: str, vocab_txt: str) -> Tokenizer:
    lines = files.read_bytes(vocab_txt).decode("utf-8").split("\n")
    vocab = {token: i for i, token in enumerate(t.rstrip("\r") for t in lines if t.rstrip("\r"))}
    lowercase = bool(_tokenizer_config(folder).get("do_lower_case", True))
    return BertWordPieceTokenizer(vocab, lowercase=lowercase)._tokenizer


def _byte_level_bpe(vocab_json: str, merges_txt: str) -> Tokenizer:
    vocab = json.loads(files.read_bytes(vocab_json))
    merges = [
        tuple(line.split(" "))
        for line in files.read_bytes(merges_txt).decode("utf-8").split("\n")
        if line and not line.startswith("#version")
    ]
    tokenizer = ByteLevelBPETokenizer(vocab, merges, add_prefix_space=False, trim_offsets=True)._tokenizer
    tokenizer.post_processor = RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]))
    return tokenizer
