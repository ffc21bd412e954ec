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


# Every step a model may declare, by the name preprocessing.json gives it.
STEPS: Mapping[str, Callable[[str], str]] = {"emoji_names": emoji_names}


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
