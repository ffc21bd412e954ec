"""Tokenization with explicit truncation, windows and no hidden padding.

Wraps a ``tokenizers.Tokenizer`` read from ``tokenizer.json`` (fallback: built
from ``vocab.txt`` for WordPiece models or ``vocab.json`` + ``merges.txt`` for
byte-level BPE ones).  Any padding or truncation stored in ``tokenizer.json`` is
switched off: the MiniLM one pads every text to 128 tokens, which would make
every batch four times as expensive.  Padding to static shapes happens later, in
the predictor's bucket grid.  Texts longer than the model's maximum are either
truncated (``encode``) or split into overlapping windows (``encode_windows``).

Every text first goes through the preprocessing the model folder declares
(:mod:`flaxmodel.inference.preprocessing`), so each caller sees the model's text.
Both tokenize only as much of a long text as their output can hold, so the work
per text is bounded however long it is (a 100 MB record once took 14 GB to
tokenize whole): a character prefix sized from the tokens needed, ended before a
whitespace run, is tokenized, and grown geometrically while it yields too few.
The ids kept are those the whole text would give, because the tokens of the
prefix's last words, which the rest of the text could change, are set aside.
Only text averaging over 256 characters per token (huge words without spaces or
punctuation) stops growing at that bound, its last word possibly cut short.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re
import threading
from typing import Sequence

import numpy as np
import tokenizers
from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer
from tokenizers.processors import RobertaProcessing

from flaxmodel.ckpts import files
from flaxmodel.errors import TokenizerError
from flaxmodel.inference.preprocessing import Preprocessing, read_preprocessing, write_preprocessing

TOKENIZER_FILE = "tokenizer.json"

# First prefix: characters per needed token, generous for prose (about 4-5 in English).
_CHARS_PER_TOKEN = 8
# Prefixes grow up to this many characters per needed token, then are used as they
# are; no normal text gets there, since tokenizer vocabularies hold short pieces.
_MAX_CHARS_PER_TOKEN = 256
# Words at the end of a prefix whose tokens may differ in the whole text.  Two,
# because byte-level BPE's split of "x'r" ("x", "'", "r") changes two words once
# the text goes on to "x're" ("x", "'re").
_UNSETTLED_WORDS = 2
# Ends at the last word followed by whitespace.  ASCII whitespace only, not \s:
# BERT's normalizer deletes \x1c-\x1f, which \s counts as whitespace, joining the
# words around them; a cut elsewhere is still made exact by _UNSETTLED_WORDS.
_LAST_WORD_END = re.compile(r".*[^ \t\n\r](?=[ \t\n\r])", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Windows:
    """Token ids of one text, one list per window, special tokens included.

    ``num_tokens`` counts the text's tokens with the special tokens of one
    window; for a ``truncated`` text, those of the prefix that was tokenized.
    """

    ids: list[list[int]]
    num_tokens: int
    truncated: bool


@dataclasses.dataclass(frozen=True)
class TokenWindows:
    """The windows of ``n`` texts as flat arrays, special tokens left out (padding adds them).

    Attributes:
      tokens: int32 ``[total]``, the tokenized part of every text, concatenated.
      num_tokens: int32 ``[n]``, as :attr:`Windows.num_tokens`.
      truncated: bool ``[n]``, as :attr:`Windows.truncated`.
      window_offsets: int64 ``[n + 1]``: text ``i``'s windows are ``window_offsets[i]:window_offsets[i + 1]``.
      window_start: int64 ``[windows]``, where each window's tokens start in ``tokens``.
      window_length: int32 ``[windows]``, its tokens (at most the encoder's ``content_length``); a
        text's first window is its longest.
    """

    tokens: np.ndarray
    num_tokens: np.ndarray
    truncated: np.ndarray
    window_offsets: np.ndarray
    window_start: np.ndarray
    window_length: np.ndarray

    @property
    def windows_per_text(self) -> np.ndarray:
        """int64 ``[n]``: windows of each text."""
        return np.diff(self.window_offsets)


class Tokenizer:
    """A model's tokenizer: its declared preprocessing, then ids with explicit truncation or windows.

    Args:
      tokenizer: the Hugging Face fast tokenizer (its stored padding and truncation are switched off).
      max_length: tokens per window, special tokens included.
      preprocessing: the steps applied to every text first (the model folder's ``preprocessing.json``).
    """

    def __init__(
        self, tokenizer: tokenizers.Tokenizer, max_length: int, preprocessing: Preprocessing = Preprocessing()
    ):
        self.preprocessing = preprocessing
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
    def from_folder(cls, folder: str, max_length: int, preprocessing: Preprocessing | None = None) -> "Tokenizer":
        """The folder's tokenizer with the preprocessing it declares (or ``preprocessing``, for a new model)."""
        return cls(load_tokenizer(folder), max_length, preprocessing or read_preprocessing(folder))

    def _prepare(self, texts: Sequence[str]) -> Sequence[str]:
        return self.preprocessing(texts) if self.preprocessing else texts

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids with special tokens, truncated to ``max_length``."""
        keep = self.content_length
        return [self.prefix + ids[:keep] + self.suffix for ids in self._leading_ids(texts, keep)[0]]

    def encode_windows(self, texts: Sequence[str], stride: int, max_windows: int) -> list[Windows]:
        """Each text as windows of at most ``max_length`` tokens overlapping by ``stride``.

        A text needing more than ``max_windows`` windows keeps the first ones and is
        marked ``truncated``; only a prefix of it is tokenized, and its
        ``num_tokens`` counts the tokens of that prefix, not of the whole text.
        The per-text view of :meth:`encode_block`.
        """
        block = self.encode_block(texts, stride, max_windows)
        prefix, suffix = list(self.prefix), list(self.suffix)
        out = []
        for text in range(len(texts)):
            first, last = block.window_offsets[text], block.window_offsets[text + 1]
            ids = [
                prefix + block.tokens[start : start + length].tolist() + suffix
                for start, length in zip(block.window_start[first:last], block.window_length[first:last])
            ]
            out.append(Windows(ids, int(block.num_tokens[text]), bool(block.truncated[text])))
        return out

    def encode_block(self, texts: Sequence[str], stride: int, max_windows: int) -> "TokenWindows":
        """Windows of many texts as flat arrays (the windows of :meth:`encode_windows`, without special tokens).

        Args:
          texts: ``n`` texts.
          stride: content tokens shared by consecutive windows, in ``[0, content_length)``.
          max_windows: windows kept per text; a text needing more is ``truncated``.

        Returns:
          A :class:`TokenWindows` over the texts, windows in text order.
        """
        if not 0 <= stride < self.content_length:
            raise ValueError(f"stride must be in [0, {self.content_length}), got {stride}")
        if max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, got {max_windows}")
        size, step = self.content_length, self.content_length - stride
        # One token past what the windows hold tells whether the text goes on.
        covered = (max_windows - 1) * step + size
        leading, whole = self._leading_ids(texts, covered + 1)
        counts = np.fromiter(map(len, leading), np.int64, len(leading))
        offsets = np.zeros(len(leading) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        tokens = np.fromiter(itertools.chain.from_iterable(leading), np.int32, int(offsets[-1]))
        # range(0, max(n - stride, 1), step) has this many starts.
        needed = (np.maximum(counts - stride, 1) + step - 1) // step
        kept = np.minimum(needed, max_windows)
        window_offsets = np.zeros(len(leading) + 1, np.int64)
        np.cumsum(kept, out=window_offsets[1:])
        window_text = np.repeat(np.arange(len(leading)), kept)
        within = np.arange(int(window_offsets[-1])) - window_offsets[window_text]
        relative = within * step
        return TokenWindows(
            tokens=tokens,
            num_tokens=(counts + len(self.prefix) + len(self.suffix)).astype(np.int32),
            truncated=(needed > max_windows) | ~whole,
            window_offsets=window_offsets,
            window_start=offsets[window_text] + relative,
            window_length=np.minimum(size, counts[window_text] - relative).astype(np.int32),
        )

    def _leading_ids(self, texts: Sequence[str], need: int) -> tuple[list[list[int]], np.ndarray]:
        """Per text, its first ids without special tokens, and whether they are all of its ids (bool ``[n]``).

        At least ``need`` ids, unless the text has fewer or averages more than
        ``_MAX_CHARS_PER_TOKEN`` characters per token.  Texts tokenized whole go
        through ``encode_batch_fast`` (no offsets, ~1.5x faster on tweets); cut
        prefixes need the word ids only ``encode_batch`` computes.
        """
        out: list[list[int]] = [[]] * len(texts)
        whole = np.ones(len(texts), bool)
        pending = list(range(len(texts)))
        limit = need * _CHARS_PER_TOKEN
        encode_whole = functools.partial(self.tokenizer.encode_batch_fast, add_special_tokens=False)
        while pending:
            final = limit >= need * _MAX_CHARS_PER_TOKEN
            short = [i for i in pending if len(texts[i]) <= limit]
            if len(short) == len(texts):
                return [e.ids for e in encode_whole(self._prepare(texts))], whole
            if short:
                encodings = encode_whole(self._prepare([texts[i] for i in short]))
                for i, encoding in zip(short, encodings):
                    out[i] = encoding.ids
            cut = [i for i in pending if len(texts[i]) > limit]
            # Only the prefix is preprocessed, so a huge record still costs what its windows use.
            pieces = self._prepare([texts[i][: _cut(texts[i], limit)] for i in cut])
            retry = []
            for i, encoding in zip(cut, self.tokenizer.encode_batch(pieces, add_special_tokens=False)):
                ids = encoding.ids if final else _settled_ids(encoding)
                if final or len(ids) >= need:
                    out[i], whole[i] = ids, False
                else:
                    retry.append(i)
            pending, limit = retry, limit * 2
        return out, whole

    def save(self, folder: str) -> None:
        """Writes ``tokenizer.json`` and the preprocessing it applies into a model folder."""
        files.write_bytes(files.join(folder, TOKENIZER_FILE), self.tokenizer.to_str().encode())
        write_preprocessing(folder, self.preprocessing)


def _cut(text: str, limit: int) -> int:
    """Where to end a prefix of ``text`` of at most ``limit`` characters: before its last
    whitespace run if one starts in the second half, else at ``limit``."""
    match = _LAST_WORD_END.match(text, limit // 2, limit + 1)
    return match.end() if match else limit


def _settled_ids(encoding: tokenizers.Encoding) -> list[int]:
    """The ids of a prefix's encoding without those of its last words."""
    words = encoding.word_ids
    end = len(words)
    for _ in range(_UNSETTLED_WORDS):
        if end:
            end = words.index(words[end - 1])
    return encoding.ids[:end]


_CACHE_LOCK = threading.Lock()


def tokenizer_for(folder: str, max_length: int, preprocessing: Sequence[str] = ()) -> Tokenizer:
    """The process's one :class:`Tokenizer` of a model folder's tokenizer, built on first use.

    The launcher (checking window settings), the tokenizing step and the
    classifier of one process share it, so a worker reads and builds each
    tokenizer once however many steps use it; the encoder is safe to share
    between threads.  ``preprocessing`` names the steps the model declares
    (its :class:`~flaxmodel.inference.reference.ModelRef` read them).
    """
    with _CACHE_LOCK:
        return _cached_encoder(str(folder), int(max_length), tuple(preprocessing))


@functools.lru_cache(maxsize=8)
def _cached_encoder(folder: str, max_length: int, preprocessing: tuple[str, ...]) -> Tokenizer:
    return Tokenizer(load_tokenizer(folder), max_length, Preprocessing(preprocessing))


def load_tokenizer(folder: str) -> tokenizers.Tokenizer:
    path = files.join(folder, TOKENIZER_FILE)
    if files.exists(path):
        try:
            return tokenizers.Tokenizer.from_str(files.read_bytes(path).decode("utf-8"))
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


def _wordpiece(folder: str, vocab_txt: str) -> tokenizers.Tokenizer:
    lines = files.read_bytes(vocab_txt).decode("utf-8").split("\n")
    vocab = {token: i for i, token in enumerate(t.rstrip("\r") for t in lines if t.rstrip("\r"))}
    lowercase = bool(_tokenizer_config(folder).get("do_lower_case", True))
    return BertWordPieceTokenizer(vocab, lowercase=lowercase)._tokenizer


def _byte_level_bpe(vocab_json: str, merges_txt: str) -> tokenizers.Tokenizer:
    vocab = json.loads(files.read_bytes(vocab_json))
    merges = [
        tuple(line.split(" "))
        for line in files.read_bytes(merges_txt).decode("utf-8").split("\n")
        if line and not line.startswith("#version")
    ]
    tokenizer = ByteLevelBPETokenizer(vocab, merges, add_prefix_space=False, trim_offsets=True)._tokenizer
    tokenizer.post_processor = RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]))
    return tokenizer
