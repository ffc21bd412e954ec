"""The rows an adapting run learns from: the user's labels mapped onto the model's classes, weighted, split.

``--train`` rows are a plain sample of the user's posts, each weighing 1.
``--reviewed`` rows come from a run's stratified review sample: stratum h held
N_h records (its sampled rows over its inclusion probability) of which r_h were
reviewed, so each reviewed row stands for N_h / r_h records, as in the
whole-run estimates (``pipelines.sinks.estimates``): training and every figure
chosen from them then see the run's population, not the sample's over-share of
flagged posts.  Held-out rows are drawn within each label (``--train``) or
stratum (``--reviewed``), so they keep the same design.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from flaxmodel.errors import DataError
from flaxmodel.training.functional import cases as functional_cases
from flaxmodel.training.adapt_config import AdaptConfig
from flaxmodel.training.data import detect_format, expand, read_labeled, read_records

HUMAN_LABEL = "human_label"
HUMAN_TARGETS = "human_targets"
TRAIN_TARGETS = "targets"
INCLUSION_PROBABILITY = "inclusion_probability"
REVIEW_REASON = "review_reason"
# Below this many rows, selection uses k folds: one held-out share would leave too few rows on either side.
FOLDS_BELOW = 300
_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class AdaptRows:
    """The user's labeled rows.

    Attributes:
      texts: ``[n]`` texts.
      labels: int ``[n]`` each row's label, an index into ``names``.
      names: the user's label names (the label map's keys).
      weights: float64 ``[n]`` records each row stands for (1 for ``--train`` rows).
      strata: ``[n]`` what held-out rows are drawn within: the row's review stratum, else its label.
      sizes: records in the run per stratum (``--reviewed``); None for ``--train``'s plain sample.
      record: where the rows came from, for ``training_data.json``.
      groups: each row's target-group cell as written (None where absent); None when no file has the column.
    """

    texts: list[str]
    labels: np.ndarray
    names: tuple[str, ...]
    weights: np.ndarray
    strata: np.ndarray
    sizes: dict[str, int] | None
    record: dict[str, Any]
    groups: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.texts)


def read_train_rows(config: AdaptConfig, names: Sequence[str]) -> AdaptRows:
    """``--train``'s rows; every label must be one of ``names`` (a DataError names the rows otherwise)."""
    fields = dict(text_field=config.text_field, label_field=config.label_field, format=config.format)
    group_field = config.target_field or TRAIN_TARGETS
    data = read_labeled(config.train, labels=tuple(names), extra_fields=(group_field,), **fields)
    labels = np.asarray(data.label_ids, np.int64)
    groups = data.fields[group_field]
    return AdaptRows(
        texts=list(data.texts),
        labels=labels,
        names=tuple(names),
        weights=np.ones(len(labels)),
        strata=np.asarray([names[i] for i in labels], object),
        sizes=None,
        record={"kind": "train", "files": expand(config.train), "rows": len(labels)},
        groups=groups if any(cell not in (None, "") for cell in groups) else None,
    )


def _probability(value: str | None, where: str) -> float:
    try:
        p = float(value) if value is not None else math.nan
    except ValueError:
        p = math.nan
    if not 0 < p <= 1:
        raise DataError(f"{where}: {INCLUSION_PROBABILITY} {value!r} is not in (0, 1]; give the run's review file as written")
    return p


def read_reviewed_rows(config: AdaptConfig, names: Sequence[str]) -> AdaptRows:
    """``--reviewed``'s reviewed rows, each weighing N_h / r_h; unreviewed rows only count towards N_h."""
    group_field = config.target_field or HUMAN_TARGETS
    fields = (HUMAN_LABEL, INCLUSION_PROBABILITY, REVIEW_REASON, group_field)
    sampled: dict[str, list[float]] = collections.defaultdict(list)
    rows: list[tuple[str, str, str, str]] = []
    groups: list[str | None] = []
    for path in expand(config.reviewed):
        kind = detect_format(path)
        for record in read_records(path, kind, config.text_field, fields):
            where = f"{path}:{record.position + 1}"
            missing = [f for f in (INCLUSION_PROBABILITY, REVIEW_REASON) if record.fields.get(f) is None]
            if missing:
                raise DataError(f"--reviewed {path}: no {', '.join(missing)}; give review-*.parquet of a run with --review_sample")
            stratum = record.fields[REVIEW_REASON]
            sampled[stratum].append(_probability(record.fields[INCLUSION_PROBABILITY], where))
            label = (record.fields.get(HUMAN_LABEL) or "").strip()
            if label:
                rows.append((record.text, label, stratum, where))
                groups.append(record.fields.get(group_field))
    if not rows:
        raise DataError(f"--reviewed {config.reviewed}: no row has a {HUMAN_LABEL}; reviewers fill it with one of {', '.join(names)}")
    unknown = [f"{where} ({label!r})" for _, label, _, where in rows if label not in names]
    if unknown:
        raise DataError(
            f"{len(unknown)} reviewed rows have a {HUMAN_LABEL} outside {', '.join(names)} (add it to --label_map or "
            f"fix the rows): {'; '.join(unknown[:_SHOWN])}"
        )
    sizes = {h: max(len(ps), round(len(ps) / ps[0])) for h, ps in sampled.items()}
    reviewed = collections.Counter(stratum for _, _, stratum, _ in rows)
    return AdaptRows(
        texts=[text for text, _, _, _ in rows],
        labels=np.asarray([names.index(label) for _, label, _, _ in rows], np.int64),
        names=tuple(names),
        weights=np.asarray([sizes[h] / reviewed[h] for _, _, h, _ in rows], np.float64),
        strata=np.asarray([h for _, _, h, _ in rows], object),
        sizes=sizes,
        record={"kind": "reviewed", "files": expand(config.reviewed), "rows": len(rows), "run_records": sum(sizes.values())},
        groups=groups if any(cell not in (None, "") for cell in groups) else None,
    )


def _sample(texts: list[str], most: int, seed: int) -> list[str]:
    if len(texts) <= most:
        return texts
    return [texts[i] for i in np.sort(np.random.default_rng(seed).choice(len(texts), most, replace=False))]


def read_unlabeled(config: AdaptConfig) -> list[str]:
    """The texts distilled on without labels: a seeded sample of at most ``--max_unlabeled`` of ``--unlabeled``'s,
    then ``--anchors`` cases of the functional suite's training templates (none with a new head: its classes
    are not the starting model's)."""
    texts = []
    if config.unlabeled:
        files = expand(config.unlabeled)
        texts = [r.text for path in files for r in read_records(path, detect_format(path), config.text_field, ())]
    anchors = [] if config.new_head else [case.text for case in functional_cases("train")]
    return _sample(texts, config.max_unlabeled, config.seed) + _sample(anchors, config.anchors, config.seed + 1)


def splits(rows: AdaptRows, config: AdaptConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train rows, held-out rows)`` index pairs: one split by ``--held_out``, or ``--folds`` folds under
    :data:`FOLDS_BELOW` rows, each drawn within every stratum from a seeded order."""
    rng = np.random.default_rng([config.seed, 1])
    k = config.folds if len(rows) < FOLDS_BELOW else 1
    fold_of = np.zeros(len(rows), np.int64)
    held = np.zeros(len(rows), bool)
    for stratum in sorted(set(rows.strata.tolist())):
        members = rng.permutation(np.flatnonzero(rows.strata == stratum))
        if k > 1:
            fold_of[members] = np.arange(len(members)) % k
        elif len(members) > 1:
            held[members[: max(1, round(config.held_out * len(members)))]] = True
    if k > 1:
        return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]
    return [(np.flatnonzero(~held), np.flatnonzero(held))]


def subsample(indices: np.ndarray, strata: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A stratified ``share`` of ``indices`` (each stratum's first rows in a seeded order), for the learning curve."""
    rng = np.random.default_rng([seed, 2])
    kept = []
    for stratum in sorted(set(strata[indices].tolist())):
        members = rng.permutation(indices[strata[indices] == stratum])
        kept.append(members[: max(1, round(share * len(members)))])
    return np.sort(np.concatenate(kept))
