"""Our own functional test suite: short English sentences, one behaviour ("functionality") each.

Content warning: the hateful cases are hateful on purpose, slurs included;
a moderation model must be tested on what it is meant to catch.

A data set tells how often a model agrees with annotators; a functional suite
tells *what* it gets wrong: dehumanising language, threats, hate asked as a
question, hate that names its target once and attacks it through a pronoun,
negated or quoted hate, counter-speech, profanity that targets no group, abuse
of one person, neutral mentions of a group.  Every case is a
template filled with a target: protected groups for the hateful cases and
their contrasts, non-protected groups for abuse that is not hate, or a group named
only by a category ("people from that religion").  All
templates here were written for this project; none comes from, or is built
from, any published suite (HateCheck stays a held-back judge that we never
train or select on).

Templates are split in two by position: even ones make the ``train`` part
(a source of the training mixture), odd ones the ``val`` part (model
selection and the evaluation job's per-functionality table), so selection
never sees a sentence pattern the model trained on.

Each case carries ``label``: the set of our classes (``hate``, ``offensive``,
``neither``) it allows, written ``a|b``; hateful cases allow only ``hate``.

This module holds the targets and generates the cases; the templates live in
:mod:`~flaxmodel.training.functional_hate` (the attacks) and
:mod:`~flaxmodel.training.functional_contrasts` (what must not read as hate).
"""

from __future__ import annotations

import dataclasses

from flaxmodel.training.functional_contrasts import CONTRASTS, NOT_HATE, UNTARGETED
from flaxmodel.training.functional_hate import ATTACKS, HATE

__all__ = [
    "FILLERS",
    "HATE",
    "NOT_HATE",
    "NOT_PROTECTED",
    "PROTECTED",
    "SPLITS",
    "TEMPLATES",
    "UNNAMED",
    "UNTARGETED",
    "Case",
    "cases",
]

# Protected characteristics: race, ethnicity, national origin, religion, gender,
# gender identity, sexual orientation, disability.
PROTECTED = (
    "women", "Black people", "Muslims", "Jews", "gay people", "trans people", "immigrants",
    "disabled people", "refugees", "Mexicans", "Asians", "lesbians", "Hindus", "Roma",
)
# Groups defined by a choice or a job: insulting them is abuse, not hate.
NOT_PROTECTED = (
    "politicians", "lawyers", "bankers", "landlords", "journalists", "vegans", "gamers", "cyclists",
)
# A group referred to only by a category or a demonstrative ("that religion"): the sentence names no group
# the model could key on, so the attack itself has to carry the label.
UNNAMED = (
    "people from that religion", "people of that race", "people from that country", "those people",
    "people of that faith", "people from that culture",
)
# Placeholder -> the targets it is filled with; a functionality's first template decides.
FILLERS = {"{g}": PROTECTED, "{n}": NOT_PROTECTED, "{v}": UNNAMED}

# functionality -> (allowed classes, templates), in case order: the attacks, then their contrasts.
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {**ATTACKS, **CONTRASTS}
SPLITS = ("train", "val")


@dataclasses.dataclass(frozen=True)
class Case:
    """One functional test case.

    Attributes:
      text: the sentence.
      label: the classes it allows, ``|``-separated (``hate``, ``offensive|neither``, ...).
      functionality: what it tests (a key of :data:`TEMPLATES` or :data:`UNTARGETED`).
      target: the group it names, "" for untargeted cases.
    """

    text: str
    label: str
    functionality: str
    target: str


def _sentence(template: str, group: str) -> str:
    text = template.format(g=group, n=group, v=group)
    return text[0].upper() + text[1:]


def cases(split: str) -> list[Case]:
    """Every case of one part of the suite, in a fixed order.

    Args:
      split: ``"train"`` (even-numbered templates) or ``"val"`` (odd-numbered ones).

    Returns:
      The cases; the same list on every call.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    parity = SPLITS.index(split)
    out: list[Case] = []
    for functionality, (label, templates) in TEMPLATES.items():
        groups = next((g for p, g in FILLERS.items() if p in templates[0]), ())
        for template in templates[parity::2]:
            if any(p in template for p in FILLERS):
                out.extend(Case(_sentence(template, g), label, functionality, g) for g in groups)
            else:
                out.append(Case(template, label, functionality, ""))
    for functionality, (label, templates) in UNTARGETED.items():
        out.extend(Case(t, label, functionality, "") for t in templates[parity::2])
    return out

