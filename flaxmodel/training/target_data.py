"""Target-group annotations of the labeled sources, mapped onto our seven protected categories.

Content warning: the mapped annotations are of hateful texts.

A target label says which group a text *attacks*: a text that is not hateful
attacks no group, whichever groups it mentions, so its row is a known 0 in every
category.  A hateful text's row is 1 in each category of its annotated target and
0 elsewhere.  What a source does not annotate is masked (``known`` is False) and
does not train: EDOS only says whether a text is sexist; ConvAbuse's tags do not
name religion or national origin; an entry whose target was not recorded says
nothing.  Each source's mapping is an explicit table below, so every
annotation value is accounted for, and an unknown value is an error naming it.

Splits follow the mixture the classifier trained on: the head's validation rows
are the rows the classifier never trained on.  A research mixture's CONAN
sources (research only) add their hateful statements' targets and their
counter-narratives' known zeros.  DynaHate's dev split (no licence stated:
selection and evaluation only) is read by :func:`read_dynahate_dev`, never for
training; its train split has no target column.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from flaxmodel.ckpts.training_data import RESEARCH
from flaxmodel.errors import DataError
from flaxmodel.training.data import detect_format, expand, read_records
from flaxmodel.training.functional import HATE, cases
from flaxmodel.training.near_duplicates import seen_in_training
from flaxmodel.training.mixture import (
    CONVABUSE_ANNOTATORS,
    CONVABUSE_FIELDS,
    CONVABUSE_TEXT,
    Mixture,
    Source,
    convabuse_label,
    val_fraction_mask,
)

# The output columns are target_<category>; the order is the head's.
CATEGORIES = ("race", "religion", "gender", "sexuality", "gender_identity", "disability", "origin")
RACE, RELIGION, GENDER, SEXUALITY, GENDER_IDENTITY, DISABILITY, ORIGIN = CATEGORIES
# Sources that annotate targets, with the licence that lets them train the default model's head.
TRAINING_SOURCES = ("hatexplain", "convabuse", "edos", "toxigen", "hatemoji_build", "functional")
# Read too when a research mixture (use = "research") has them: CONAN is for research only.
RESEARCH_SOURCES = ("conan_hate", "conan_counter")
UNKNOWN = None  # a target that was not recorded: every category masked

# DynaHate and HatemojiBuild target codes (the same annotation guide): code -> categories attacked.
_CODES: dict[str, tuple[str, ...] | None] = {
    "abo": (RACE,), "african": (RACE,), "arab": (RACE,), "asi": (RACE,), "asi.chin": (RACE, ORIGIN),
    "asi.east": (RACE,), "asi.east.chin": (RACE, ORIGIN), "asi.pak": (RACE, ORIGIN), "asi.south": (RACE,),
    "asi.south.pak": (RACE, ORIGIN), "asi.south.thai": (RACE, ORIGIN), "asi.wom": (RACE, GENDER),
    "asiman": (RACE, GENDER), "asiwom": (RACE, GENDER), "asy": (ORIGIN,), "asylum": (ORIGIN,),
    "bis": (SEXUALITY,), "bla": (RACE,), "bla.man": (RACE, GENDER), "bla.wom": (RACE, GENDER),
    "blaman": (RACE, GENDER), "blawom": (RACE, GENDER), "dis": (DISABILITY,), "ethmin": (RACE,),
    "ethnic.minority": (RACE,), "europe.east": (ORIGIN,), "for": (ORIGIN,), "gay": (SEXUALITY,),
    "gay.man": (SEXUALITY,), "gay.wom": (SEXUALITY,), "gayman": (SEXUALITY,), "gaywom": (SEXUALITY,),
    "gendermin": (GENDER_IDENTITY,), "hind": (RELIGION,), "hisp": (RACE,), "hispanic": (RACE,),
    "immig": (ORIGIN,), "ind": (RACE, ORIGIN), "indig": (RACE,), "indig.wom": (RACE, GENDER),
    "indigwom": (RACE, GENDER), "indwom": (RACE, ORIGIN, GENDER), "jew": (RELIGION,),
    "lgbtq": (SEXUALITY, GENDER_IDENTITY), "lgbtqa": (SEXUALITY, GENDER_IDENTITY), "mex": (RACE, ORIGIN),
    "mexwom": (RACE, ORIGIN, GENDER), "mix.race": (RACE,), "mixed.race": (RACE,), "mus": (RELIGION,),
    "mus.wom": (RELIGION, GENDER), "muswom": (RELIGION, GENDER), "non.white": (RACE,),
    "other.national": (ORIGIN,), "other.religion": (RELIGION,), "pol": (ORIGIN,), "ref": (ORIGIN,),
    "russian": (ORIGIN,), "sikh": (RELIGION,), "sikhwom": (RELIGION, GENDER), "trans": (GENDER_IDENTITY,),
    "trav": (RACE,), "wom": (GENDER,),
    # Attacked, but none of the seven: working class, the old, Nazis, glorified figures.
    "wc": (), "old.people": (), "nazis": (), "hitler": (), "other.glorification": (), "none": (),
    "notgiven": UNKNOWN, "notargetrecorded": UNKNOWN,
}
_NATIONALITY = "nat."  # nat.<country>: national origin

# HateXplain's target columns: column -> {value: category}; the column's "no target" value maps to nothing.
_HATEXPLAIN = {
    "Race": {"No_race": None, **{v: RACE for v in ("African", "Arab", "Caucasian", "Asian", "Hispanic", "Indigenous", "Indian")}},
    "Religion": {"Nonreligious": None, **{v: RELIGION for v in ("Islam", "Jewish", "Christian", "Hindu", "Buddhism")}},
    "Gender": {"No_gender": None, "Women": GENDER, "Men": GENDER},
    "Sexual Orientation": {"No_orientation": None, **{v: SEXUALITY for v in ("Homosexual", "Heterosexual", "Asexual", "Bisexual")}},
    "Miscellaneous": {"None": None, "Other": None, "Economic": None, "Minority": None, "Refugee": ORIGIN, "Disability": DISABILITY},
}
# ConvAbuse's identity tags; it has none for religion or national origin.
_CONVABUSE_TAGS = {"racist": RACE, "sexist": GENDER, "homophobic": SEXUALITY, "transphobic": GENDER_IDENTITY, "ableist": DISABILITY}
_TOXIGEN = {
    "lgbtq": (SEXUALITY, GENDER_IDENTITY), "bisexual": (SEXUALITY,), "trans": (GENDER_IDENTITY,),
    "immigrant": (ORIGIN,), "middle_east": (RACE, ORIGIN), "physical_disability": (DISABILITY,),
    "mental_disability": (DISABILITY,), "women": (GENDER,), "muslim": (RELIGION,), "mexican": (RACE, ORIGIN),
    "black": (RACE,), "chinese": (RACE, ORIGIN), "asian": (RACE,), "jewish": (RELIGION,),
    "native_american": (RACE,), "latino": (RACE,),
}
# Multitarget-CONAN's TARGET column; "other" (e.g. Roma, the elderly, mixed) is not recorded per group, and
# "LGBT+" attacks sexuality, with gender identity not said.
_CONAN = {
    "MUSLIMS": ((RELIGION,), CATEGORIES), "JEWS": ((RELIGION,), CATEGORIES), "MIGRANTS": ((ORIGIN,), CATEGORIES),
    "WOMEN": ((GENDER,), CATEGORIES), "POC": ((RACE,), CATEGORIES), "DISABLED": ((DISABILITY,), CATEGORIES),
    "LGBT+": ((SEXUALITY,), tuple(c for c in CATEGORIES if c != GENDER_IDENTITY)), "other": (UNKNOWN, CATEGORIES),
}
# Our functional suite's targets (flaxmodel.training.functional.PROTECTED and UNNAMED).
_FUNCTIONAL = {
    "women": (GENDER,), "Black people": (RACE,), "Muslims": (RELIGION,), "Jews": (RELIGION,),
    "gay people": (SEXUALITY,), "trans people": (GENDER_IDENTITY,), "immigrants": (ORIGIN,),
    "disabled people": (DISABILITY,), "refugees": (ORIGIN,), "Mexicans": (RACE, ORIGIN), "Asians": (RACE,),
    "lesbians": (SEXUALITY,), "Hindus": (RELIGION,), "Roma": (RACE,),
    "people from that religion": (RELIGION,), "people of that race": (RACE,), "people from that country": (ORIGIN,),
    "people of that faith": (RELIGION,), "those people": UNKNOWN, "people from that culture": UNKNOWN,
}


@dataclasses.dataclass(frozen=True)
class TargetSet:
    """Rows of one source and split with their target labels.

    Attributes:
      name: the source.
      texts: ``n`` texts.
      labels: float32 ``[n, len(CATEGORIES)]``, 1 where the text attacks that category.
      known: bool ``[n, len(CATEGORIES)]``, False where the source does not say (masked).
      hateful: bool ``[n]``, the source's own hateful / abusive label.
    """

    name: str
    texts: list[str]
    labels: np.ndarray
    known: np.ndarray
    hateful: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, keep: np.ndarray, name: str) -> "TargetSet":
        """The rows where bool ``keep`` ``[n]`` is True, under another name."""
        texts = [t for t, k in zip(self.texts, keep) if k]
        return TargetSet(name, texts, self.labels[keep], self.known[keep], self.hateful[keep])


# One annotated row before splitting: text, split tag (or None), hateful, attacked categories or UNKNOWN, the
# categories the source can say anything about.
_Row = tuple[str, str | None, bool, tuple[str, ...] | None, tuple[str, ...]]


def codes_categories(codes: str, source: str) -> tuple[str, ...] | None:
    """The categories of a DynaHate / HatemojiBuild ``target`` cell (``"bla"``, ``"immig, ref"``, ``"['mus', 'jew']"``)."""
    found: list[str] = []
    for code in re.findall(r"[A-Za-z][\w.\-]*", codes):
        if code.startswith(_NATIONALITY):
            found.append(ORIGIN)
            continue
        if code not in _CODES:
            raise DataError(f"{source}: target code {code!r} has no category in flaxmodel.training.target_data._CODES")
        if _CODES[code] is UNKNOWN:
            return UNKNOWN
        found.extend(_CODES[code])
    return tuple(dict.fromkeys(found))


def _table(path: str, text_field: str, fields: Sequence[str]) -> list[tuple[str, Mapping[str, str | None]]]:
    return [(r.text, r.fields) for p in expand(path) for r in read_records(p, detect_format(p), text_field, fields)]


def _hatexplain(path: str, split_field: str | None) -> list[_Row]:
    rows = []
    for text, f in _table(path, "comment", ("label", *_HATEXPLAIN)):
        named = []
        for column, values in _HATEXPLAIN.items():
            if f[column] not in values:
                raise DataError(f"{path}: {column} value {f[column]!r} has no category in target_data._HATEXPLAIN")
            named += [values[f[column]]] if values[f[column]] else []
        label = f["label"]
        # An offensive post's group may be insulted rather than attacked for who they are: not decided, masked.
        attacked = tuple(dict.fromkeys(named)) if label == "hatespeech" else (UNKNOWN if named and label == "offensive" else ())
        rows.append((text, None, label == "hatespeech", attacked, CATEGORIES))
    return rows


def _convabuse(path: str, split_field: str | None) -> list[_Row]:
    rows = []
    for text, f in _table(path, CONVABUSE_TEXT, CONVABUSE_FIELDS):
        label = convabuse_label(f)
        if label == "ambiguous":
            continue
        tags = {
            _CONVABUSE_TAGS[tag]
            for a in range(1, CONVABUSE_ANNOTATORS + 1)
            for tag in _CONVABUSE_TAGS
            if (f.get(f"Annotator{a}_{tag}") or "").startswith("1")
        }
        attacked = tuple(c for c in CATEGORIES if c in tags) if label == "abusive_identity" else ()
        rows.append((text, None, label == "abusive_identity", attacked, tuple(_CONVABUSE_TAGS.values())))
    return rows


def _edos(path: str, split_field: str | None) -> list[_Row]:
    sexist = [(t, f[split_field], f["label_sexist"] == "sexist") for t, f in _table(path, "text", ("label_sexist", split_field))]
    return [(t, split, s, (GENDER,) if s else (), (GENDER,)) for t, split, s in sexist]


def _toxigen(path: str, split_field: str | None) -> list[_Row]:
    rows = []
    for text, f in _table(path, "text", ("label", "group")):
        if f["group"] not in _TOXIGEN:
            raise DataError(f"{path}: group {f['group']!r} has no category in target_data._TOXIGEN")
        hate = f["label"] == "hate"
        rows.append((text, None, hate, _TOXIGEN[f["group"]] if hate else (), CATEGORIES))
    return rows


def _hatemoji(path: str, split_field: str | None) -> list[_Row]:
    rows = []
    for text, f in _table(path, "text", ("label_gold", "target")):
        hate = f["label_gold"] == "1"
        rows.append((text, None, hate, codes_categories(f["target"], path) if hate else (), CATEGORIES))
    return rows


def _conan(text_field: str, hateful: bool) -> Callable[[str, str | None], list[_Row]]:
    def read(path: str, split_field: str | None) -> list[_Row]:
        rows = []
        for text, f in _table(path, text_field, ("TARGET",)):
            if f["TARGET"] not in _CONAN:
                raise DataError(f"{path}: TARGET {f['TARGET']!r} has no category in target_data._CONAN")
            attacked, said = _CONAN[f["TARGET"]] if hateful else ((), CATEGORIES)
            rows.append((text, None, hateful, attacked, said))
        return rows

    return read


_READERS: dict[str, Callable[[str, str | None], list[_Row]]] = {
    "hatexplain": _hatexplain,
    "convabuse": _convabuse,
    "edos": _edos,
    "toxigen": _toxigen,
    "hatemoji_build": _hatemoji,
    # A counter-narrative names the group it defends and attacks nobody: known zeros.
    "conan_hate": _conan("HATE_SPEECH", hateful=True),
    "conan_counter": _conan("COUNTER_NARRATIVE", hateful=False),
}


def _functional(split: str) -> list[_Row]:
    return [
        (c.text, None, c.label == HATE, _FUNCTIONAL.get(c.target, UNKNOWN) if c.label == HATE else (), CATEGORIES)
        for c in cases(split)
    ]


def functional_targets(split: str = "val") -> TargetSet:
    """Our functional suite's cases of ``split`` with their target annotations (no data folder needed)."""
    return _to_set("functional", _functional(split))


def _to_set(name: str, rows: Iterable[_Row]) -> TargetSet:
    rows = list(rows)
    labels = np.zeros((len(rows), len(CATEGORIES)), np.float32)
    known = np.zeros((len(rows), len(CATEGORIES)), bool)
    for i, (_, _, _, attacked, said) in enumerate(rows):
        if attacked is UNKNOWN:
            continue
        known[i] = [c in said for c in CATEGORIES]
        labels[i] = [c in attacked for c in CATEGORIES]
    return TargetSet(name, [r[0] for r in rows], labels, known, np.array([r[2] for r in rows], bool))


def _read_split(source: Source, root: str, seed: int) -> tuple[list[_Row], list[_Row]]:
    if source.reader == "functional":
        return _functional(source.train), _functional(source.val or "val")
    reader = _READERS[source.name]
    rows = reader(os.path.join(root, source.train), source.split_field)
    if source.val is not None:
        return rows, reader(os.path.join(root, source.val), source.split_field)
    if source.split_field is not None:
        return [r for r in rows if r[1] == source.train_split], [r for r in rows if r[1] == source.val_split]
    is_val = val_fraction_mask(source, len(rows), seed)
    return [r for r, v in zip(rows, is_val) if not v], [r for r, v in zip(rows, is_val) if v]


def read_target_sets(mixture: Mixture, root: str) -> tuple[list[TargetSet], list[TargetSet]]:
    """The training and validation target rows of every :data:`TRAINING_SOURCES` source in ``mixture``,
    and of its :data:`RESEARCH_SOURCES` when it is a research mixture.

    Args:
      mixture: gives each source's files and split (the classifier's, so validation rows stay unseen).
      root: the data root.

    Returns:
      ``(train, val)``, one :class:`TargetSet` per source each.
    """
    by_name = {s.name: s for s in mixture.sources}
    missing = [name for name in TRAINING_SOURCES if name not in by_name]
    if missing:
        raise DataError(f"the mixture has no sources {missing}, which annotate the targets the head trains on")
    train, val = [], []
    research = [name for name in RESEARCH_SOURCES if name in by_name and mixture.use == RESEARCH]
    for name in (*TRAINING_SOURCES, *research):
        train_rows, val_rows = _read_split(by_name[name], root, mixture.seed)
        train.append(_to_set(name, train_rows))
        val.append(_to_set(name, val_rows))
    return train, val


def target_annotations(sets: Sequence[TargetSet]) -> dict[tuple[str, str], str]:
    """``(source, text) -> targets`` (categories joined by ``|``, "" for none) of the rows annotated in every
    category, as the evaluation job's ``--target_field`` reads them; a text annotated two ways is left out."""
    found: dict[tuple[str, str], str] = {}
    clashing: set[tuple[str, str]] = set()
    for s in sets:
        for i in np.flatnonzero(s.known.all(axis=1)):
            key = (s.name, s.texts[i])
            value = "|".join(c for c, y in zip(CATEGORIES, s.labels[i]) if y > 0.5)
            if found.setdefault(key, value) != value:
                clashing.add(key)
    return {k: v for k, v in found.items() if k not in clashing}


def read_dynahate_dev(root: str, unseen: bool = False) -> TargetSet:
    """DynaHate's dev split (``dynahate/dev.csv``) with its targets: for selection and evaluation only.

    Args:
      root: the labeled data folder.
      unseen: keep only the rows with no near-duplicate in DynaHate's train split, the fair judge of a
        model trained on that split (its perturbation pairs straddle train and dev).

    Returns:
      The rows, named ``dynahate_dev`` or ``dynahate_dev_unseen``.
    """
    path = os.path.join(root, "dynahate", "dev.csv")
    rows = []
    for text, f in _table(path, "text", ("label", "target")):
        hate = f["label"] == "hate"
        rows.append((text, None, hate, codes_categories(f["target"], path) if hate else (), CATEGORIES))
    data = _to_set("dynahate_dev", rows)
    return data.subset(unseen_in_training(data, root), "dynahate_dev_unseen") if unseen else data


def unseen_in_training(dev: TargetSet, root: str) -> np.ndarray:
    """bool ``[n]``: the rows of DynaHate's dev split with no near-duplicate in its train split."""
    trained = [text for text, _ in _table(os.path.join(root, "dynahate", "train.csv"), "text", ())]
    return ~seen_in_training(dev.texts, trained)
