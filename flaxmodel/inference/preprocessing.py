"""The text preprocessing a model folder declares (``preprocessing.json``), applied by its tokenizer.

A model is trained on text after some steps (emoji replaced by their names, for
a vocabulary that has none) and must see the same steps wherever it scores text:
training, evaluation, threshold choice and the moderation job.  So the steps
belong to the model, not to a command line: the folder's ``preprocessing.json``
lists them, the :class:`~flaxmodel.inference.tokenizer.Tokenizer` built from the
folder applies them before tokenizing, and they are part of the model's
identity (its :class:`~flaxmodel.inference.reference.ModelRef` hash).  A folder
without the file declares none.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from typing import Callable, Mapping, Sequence

from flaxmodel.ckpts import files
from flaxmodel.errors import CheckpointError, ConfigError

PREPROCESSING_FILE = "preprocessing.json"


def emoji_names(text: str) -> str:
    """Each emoji replaced by its English name in words ("they are 🐒" -> "they are monkey").

    A name gets a space on each side unless whitespace is already there, so the
    words around it stay words.  ASCII text has no emoji and is returned as it is,
    which keeps the step nearly free on most posts.
    """
    if text.isascii():
        return text
    import emoji

    found = emoji.emoji_list(text)
    if not found:
        return text
    parts: list[str] = []
    last = 0
    for match in found:
        start, end = match["match_start"], match["match_end"]
        # A space before the name, unless the text has one there or the emoji before already left one.
        if start > 0 and not text[start - 1].isspace() and start != last:
            parts.append(text[last:start] + " ")
        else:
            parts.append(text[last:start])
        parts.append(emoji.demojize(match["emoji"], delimiters=("", "")).replace("_", " "))
        if end < len(text) and not text[end].isspace():
            parts.append(" ")
        last = end
    parts.append(text[last:])
    return "".join(parts)


# Four or more single letters, each pair split by the same one separator ("v e r m i n", "s.c.u.m"):
# shorter runs are too often real text ("u r a", "W T F").
_SPACED = re.compile(r"(?<![^\W\d_])[^\W\d_]([ .*_-])[^\W\d_](?:\1[^\W\d_]){2,}(?![^\W\d_])")


def join_spaced_letters(text: str) -> str:
    """Runs of four or more single letters split by one repeated separator joined into a word.

    "they are v e r m i n" -> "they are vermin", "s.c.u.m" -> "scum".  Spacing
    out the word that carries the hate is a common evasion: WordPiece reads each
    letter as its own token, and the word is gone.
    """
    return _SPACED.sub(lambda match: match.group(0).replace(match.group(1), ""), text)


_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_CHUNK = re.compile(r"\S+")
_WORD = re.compile(r"[A-Za-z0-9@$]+")
# A letter, then a substitute with a letter after it ("k1lled", "h3ll0"), or a word that opens with a
# substitute and a letter and has another substitute ("1d10t5"): not "mp3", "4chan", "10th", "gr8", "@user".
_LEET_WORD = re.compile(
    r"[A-Za-z]+[013457@$]+[A-Za-z][A-Za-z013457@$]*|[013457$][A-Za-z]+[013457@$][A-Za-z013457@$]*"
)


def undo_leetspeak(text: str) -> str:
    """Digits and symbols standing for letters inside a word read as those letters.

    "they should be k1lled" -> "they should be killed", "p4r@sites" -> "parasites".
    Only a word of letters and the substitutes 0 1 3 4 5 7 @ $ changes, and only
    when a substitute has a letter before and after it, or the word opens with
    one and has another ("1d10t5"), so numbers, "mp3", "4chan", "10th", "covid19"
    and "gr8" stay as they are, and so do links, hashtags and mentions.
    """
    if not any(c in text for c in "013457@$"):
        return text
    return _CHUNK.sub(_undo_leetspeak_chunk, text)


def _undo_leetspeak_chunk(chunk: re.Match) -> str:
    text = chunk.group(0)
    # Links, hashtags and mentions are names, not words: "t.co/A3rM", "#WWG1WGA" must stay as written.
    if text[0] in "#@" or "://" in text or "www." in text:
        return text
    return _WORD.sub(_undo_leetspeak_word, text)


def _undo_leetspeak_word(word: re.Match) -> str:
    text = word.group(0)
    return text.translate(_LEET) if _LEET_WORD.fullmatch(text) else text


# Every step a model may declare, by the name preprocessing.json gives it.
STEPS: Mapping[str, Callable[[str], str]] = {
    "emoji_names": emoji_names,
    "join_spaced_letters": join_spaced_letters,
    "undo_leetspeak": undo_leetspeak,
}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """An ordered list of :data:`STEPS`; calling it applies them to each text."""

    steps: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [step for step in self.steps if step not in STEPS]
        if unknown:
            raise ConfigError(f"unknown preprocessing steps {unknown}; known: {sorted(STEPS)}")
        if "emoji_names" in self.steps and importlib.util.find_spec("emoji") is None:
            raise ConfigError("preprocessing step emoji_names needs the emoji package: pip install emoji")

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __call__(self, texts: Sequence[str]) -> list[str]:
        """The texts after every step, in order."""
        out = list(texts)
        for step in self.steps:
            out = [STEPS[step](text) for text in out]
        return out


def read_preprocessing(folder: str) -> Preprocessing:
    """The preprocessing a model folder declares (none without ``preprocessing.json``).

    Raises:
      CheckpointError: for a file that is not ``{"steps": [names]}``, or names an unknown step.
    """
    path = files.join(folder, PREPROCESSING_FILE)
    if not files.exists(path):
        return Preprocessing()
    try:
        steps = json.loads(files.read_bytes(path))["steps"]
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise TypeError("steps is not a list of names")
        return Preprocessing(tuple(steps))
    except (ValueError, KeyError, TypeError, ConfigError) as err:
        raise CheckpointError(f"{path}: expected {{'steps': [{', '.join(sorted(STEPS))}, ...]}} ({err})") from None


def write_preprocessing(folder: str, preprocessing: Preprocessing) -> None:
    """Writes ``preprocessing.json`` into a model folder when it declares any step."""
    if preprocessing:
        files.write_bytes(
            files.join(folder, PREPROCESSING_FILE), (json.dumps({"steps": list(preprocessing.steps)}) + "\n").encode()
        )
