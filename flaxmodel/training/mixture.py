"""A declared data mixture's rows: each source's training and validation sets, and each epoch's sample.

A mixture (:mod:`flaxmodel.training.mixture_file` reads its file) names
several labeled sources, each mapped onto our classes.  A label that allows
one class is an ordinary label; one that allows several is a *partial* label
(a source that only says "not hate" does not say whether a text is offensive),
trained with minus the log of the summed probability of the allowed classes
(:func:`flaxmodel.training.state.partial_label_loss`).

:func:`read_mixture` turns it into one training set (a row per text with its
allowed-class mask and source) and one validation set per source, each scored
on the source's own labels (:mod:`flaxmodel.training.evaluation`);
:func:`epoch_rows` draws the rows of each epoch by the sources' weights.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from typing import Iterable, Mapping, Sequence

import numpy as np

from flaxmodel.errors import ConfigError, DataError
from flaxmodel.training.data import (
    LabeledData,
    detect_format,
    expand,
    read_records,
    read_tweeteval,
    without_blank_texts,
)
from flaxmodel.training.functional import cases
from flaxmodel.training.mixture_file import DEFAULT_MIXTURE, READERS, Mixture, Source, load_mixture
from flaxmodel.training.near_duplicates import seen_in_training

__all__ = [
    "DEFAULT_MIXTURE",
    "READERS",
    "Mixture",
    "Source",
    "SourceSet",
    "epoch_rows",
    "load_mixture",
    "read_mixture",
    "read_source",
    "single_source",
    "val_fraction_mask",
    "validation_rows",
]

# ConvAbuse's per-annotator columns: is_abuse.<score> one-hot (1 not abusive ... -3 very strongly) and tags.
CONVABUSE_SCORES = (1, 0, -1, -2, -3)
CONVABUSE_IDENTITY = ("racist", "sexist", "homophobic", "transphobic", "ableist")
CONVABUSE_ANNOTATORS = 8


@dataclasses.dataclass(frozen=True)
class SourceSet:
    """Rows of one source and split, labeled in the source's own scheme.

    Attributes:
      name: the source's name.
      texts: the texts.
      label_ids: int32 ``[n]`` index into ``label_names``.
      label_names: the source's labels present in the mapping (dropped ones excluded).
      allowed: bool ``[len(label_names), num_classes]`` which of our classes each label allows.
      groups: per row, a sub-group to report separately (the functional suite's functionality), or None.
    """

    name: str
    texts: list[str]
    label_ids: np.ndarray
    label_names: tuple[str, ...]
    allowed: np.ndarray
    groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def masks(self) -> np.ndarray:
        """float32 ``[n, num_classes]``: the classes each row allows."""
        return self.allowed[self.label_ids].astype(np.float32)


# ConvAbuse's text is the user's message; its label comes from every annotator's columns.
CONVABUSE_TEXT = "user"
CONVABUSE_FIELDS = tuple(
    f"Annotator{a}_{column}"
    for a in range(1, CONVABUSE_ANNOTATORS + 1)
    for column in (*(f"is_abuse.{s}" for s in CONVABUSE_SCORES), *CONVABUSE_IDENTITY)
)


def convabuse_label(row: Mapping[str, str]) -> str:
    votes, identity = [], False
    for a in range(1, CONVABUSE_ANNOTATORS + 1):
        # A cell may repeat an annotator's answer ("1, 1"); its first value counts.
        marked = [s for s in CONVABUSE_SCORES if (row.get(f"Annotator{a}_is_abuse.{s}") or "").startswith("1")]
        votes.extend(marked[:1])
        identity |= any((row.get(f"Annotator{a}_{tag}") or "").startswith("1") for tag in CONVABUSE_IDENTITY)
    if not votes:
        return "ambiguous"
    median = statistics.median_low(votes)
    if median > 0:
        return "not_abusive"
    if median == 0:
        return "ambiguous"
    return "abusive_identity" if identity else "abusive"


def _raw_rows(source: Source, root: str, which: str) -> list[tuple[str, str, str | None]]:
    """``(text, label, tag)`` rows of a file or suite part, before mapping.

    ``tag`` is the row's ``split_field`` value for a source split by a column, the functionality for
    the functional suite, else None.
    """
    if source.reader == "functional":
        return [(c.text, c.label, c.functionality) for c in cases(which)]
    rows: list[tuple[str, str, str | None]] = []
    for path in expand(os.path.join(root, which)):
        if source.reader == "tweeteval":
            texts, labels, names = read_tweeteval(path)
            kept = without_blank_texts(path, texts)
            rows.extend((texts[i], names[int(labels[i])] if names else labels[i], None) for i in kept)
            continue
        convabuse = source.reader == "convabuse"
        text_field = CONVABUSE_TEXT if convabuse else source.text_field
        fields = (*(CONVABUSE_FIELDS if convabuse else (source.label_field,)), source.split_field)
        for record in read_records(path, detect_format(path), text_field, fields):
            label = convabuse_label(record.fields) if convabuse else record.fields.get(source.label_field)
            split = record.fields.get(source.split_field) if source.split_field else None
            rows.append((record.text, str(label), split))
    return rows


def _to_set(source: Source, rows: Sequence[tuple[str, str, str | None]], classes: tuple[str, ...], groups: bool) -> SourceSet:
    mapping = source.labels or {r[1]: tuple(r[1].split("|")) for r in rows}
    unknown = sorted({label for _, label, _ in rows} - set(mapping))
    if unknown:
        raise DataError(f"mixture source {source.name!r}: labels {unknown[:5]} have no mapping in its labels table")
    names = tuple(label for label, allowed in mapping.items() if allowed)
    kept = [r for r in rows if mapping[r[1]]]
    allowed = np.array([[c in mapping[n] for c in classes] for n in names], dtype=bool).reshape(len(names), len(classes))
    return SourceSet(
        name=source.name,
        texts=[r[0] for r in kept],
        label_ids=np.array([names.index(r[1]) for r in kept], dtype=np.int32),
        label_names=names,
        allowed=allowed,
        groups=[r[2] for r in kept] if groups else None,
    )


def val_fraction_mask(source: Source, rows: int, seed: int) -> np.ndarray:
    """Which of a ``val_fraction`` source's rows (in file order) are validation rows: bool ``[rows]``."""
    # Seeded by the mixture's seed and the source's name: adding a source does not move another's split.
    return np.random.default_rng([seed, *source.name.encode()]).random(rows) < source.val_fraction


def read_source(source: Source, root: str, classes: tuple[str, ...], seed: int) -> tuple[SourceSet, SourceSet | None]:
    """The training and validation rows of one source.

    Args:
      source: the source.
      root: the folder its paths are relative to.
      classes: our classes, in id order.
      seed: seeds a ``val_fraction`` split (the same rows on every run with this seed).

    Returns:
      ``(train, val)``; ``val`` is None for a source with no validation rows. With ``val_unseen``,
      validation rows with a near-duplicate among the training rows are left out of ``val``.

    Raises:
      DataError: for a missing file or a label with no mapping.
    """
    rows = _raw_rows(source, root, source.train)
    if source.val is not None:
        train_rows, val_rows = rows, _raw_rows(source, root, source.val)
    elif source.split_field is not None:
        train_rows = [r for r in rows if r[2] == source.train_split]
        val_rows = [r for r in rows if r[2] == source.val_split]
    elif source.val_fraction > 0:
        is_val = val_fraction_mask(source, len(rows), seed)
        train_rows = [r for r, v in zip(rows, is_val) if not v]
        val_rows = [r for r, v in zip(rows, is_val) if v]
    else:
        train_rows, val_rows = rows, []
    if source.val_unseen:
        seen = seen_in_training([r[0] for r in val_rows], [r[0] for r in train_rows])
        val_rows = [r for r, s in zip(val_rows, seen) if not s]
    groups = source.reader == "functional"
    train = _to_set(source, train_rows, classes, groups)
    if not len(train):
        raise DataError(f"mixture source {source.name!r}: no training rows under {root}")
    val = _to_set(source, val_rows, classes, groups) if val_rows else None
    return train, val


def epoch_rows(sizes: Sequence[int], weights: Sequence[float], seed: int, epoch: int) -> np.ndarray:
    """Which training rows one epoch samples: ``round(weight x size)`` rows of each source.

    Args:
      sizes: training rows per source; rows are numbered source after source.
      weights: each source's sampling weight.
      seed, epoch: what the sample depends on (a resumed run draws the same rows).

    Returns:
      int ``[sum(round(weight x size))]`` row indices, grouped by source (the caller shuffles).
    """
    rng = np.random.default_rng([seed, epoch, 1])
    out, offset = [], 0
    for size, weight in zip(sizes, weights):
        wanted = int(round(weight * size))
        copies, rest = divmod(wanted, size)
        out.extend([np.arange(size)] * copies)
        out.append(rng.permutation(size)[:rest])
        out[-copies - 1 :] = [part + offset for part in out[-copies - 1 :]]
        offset += size
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def read_mixture(mixture: Mixture, root: str) -> tuple[list[SourceSet], list[SourceSet]]:
    """Every source's training and validation rows (see :func:`read_source`).

    Args:
      mixture: the mixture.
      root: the folder the sources' paths are relative to.

    Returns:
      ``(train sets, validation sets)``, in the mixture's source order; sources
      without validation rows have no validation set, and ``evaluate_only`` sources
      (their licence allows selection, not training) no training set.
    """
    if not os.path.isdir(root):
        raise ConfigError(f"--data_root {root}: no such folder")
    train, val = [], []
    for source in mixture.sources:
        t, v = read_source(source, root, mixture.classes, mixture.seed)
        if not source.evaluate_only:
            train.append(t)
        if v is not None:
            val.append(v)
    return train, val


def single_source(data: LabeledData, name: str) -> SourceSet:
    """Plain labeled data as a source whose labels are our classes, one each."""
    return SourceSet(
        name=name,
        texts=data.texts,
        label_ids=data.label_ids,
        label_names=data.labels,
        allowed=np.eye(len(data.labels), dtype=bool),
    )


def validation_rows(val_sets: Sequence[SourceSet], classes: Sequence[str]) -> Iterable[dict[str, str]]:
    """The validation sets as labeled records the evaluation job reads.

    Each row has ``text``, ``label`` (the classes it allows, ``|``-separated),
    ``source`` and, for the functional suite, ``functionality``; group the
    job's report by them with ``--group_by source,functionality``.
    """
    for val in val_sets:
        names = ["|".join(c for c, a in zip(classes, row) if a) for row in val.allowed]
        for i, text in enumerate(val.texts):
            row = {"text": text, "label": names[val.label_ids[i]], "source": val.name}
            if val.groups is not None:
                row["functionality"] = val.groups[i]
            yield row

