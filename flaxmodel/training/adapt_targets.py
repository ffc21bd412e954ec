"""The target-group head of an adapted model when the user's rows name the groups they attack.

Without such rows the starting model's head is kept, frozen, and the loss holds
its scores (:mod:`~flaxmodel.training.adapt_step`).  When some rows carry
target groups (a ``targets`` column, or a review file's ``human_targets``, as
``race|religion``; an empty cell: the row attacks none) the head trains beside
the adapters: towards those groups on the rows that name them, towards the
starting model's scores everywhere else.  Each group's threshold is then
chosen again by weighted F1 on the held-out annotated rows, where they hold at
least :data:`MIN_ATTACKS` attacks on it and a row without; otherwise the
starting model's threshold stays.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from flaxmodel.errors import ConfigError, DataError
from flaxmodel.inference.metrics import threshold_for_f1
from flaxmodel.training.adapt_data import AdaptRows

MIN_ATTACKS = 5
_SHOWN = 5


def row_groups(rows: AdaptRows, categories: Sequence[str], field: str | None = None) -> np.ndarray | None:
    """What the user's rows say about each target group.

    Args:
      rows: the user's rows, with their target-group cells (``rows.groups``).
      categories: the starting model's target groups (none without a target head).
      field: the ``--target_field`` the user gave (None: the default column, used if there).

    Returns:
      float32 ``[len(rows), len(categories)]``: 1 where a row's cell names the group, 0 where its cell
      names others or none, NaN for a row without a cell; None when no row has one or there is no head.

    Raises:
      DataError: naming rows whose cells name a group the head does not have, or when ``field`` was given
        and no row names a group in it.
      ConfigError: when ``field`` was given and the model has no target-group head.
    """
    if field and rows.groups is None:
        raise DataError(f"--target_field {field}: no row names a target group in that column; fix the name or leave the flag out")
    if field and not categories:
        raise ConfigError(f"--target_field {field}: the starting model has no target-group head to re-fit; leave the flag out")
    if rows.groups is None or not categories:
        return None
    out = np.full((len(rows), len(categories)), np.nan, np.float32)
    unknown = []
    for i, cell in enumerate(rows.groups):
        if cell is None:
            continue
        named = {group.strip() for group in cell.split("|") if group.strip()}
        if named - set(categories):
            unknown.append(f"{rows.texts[i][:40]!r} ({'|'.join(sorted(named - set(categories)))})")
        out[i] = [c in named for c in categories]
    if unknown:
        raise DataError(
            f"{len(unknown)} rows name target groups outside {', '.join(categories)} (fix the rows or leave the "
            f"column out): {'; '.join(unknown[:_SHOWN])}"
        )
    return out


def kept_scores(teacher: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """What the target head trains towards, float32 ``[n, T]`` each: the rows' groups where they say, else
    ``teacher`` (the user's rows first, then the unlabeled texts); and 1 where the rows say."""
    padded = np.full(teacher.shape, np.nan, np.float32)
    if groups is not None:
        padded[: len(groups)] = groups
    said = ~np.isnan(padded)
    return np.where(said, padded, teacher).astype(np.float32), said.astype(np.float32)


def refit_thresholds(
    scores: np.ndarray, groups: np.ndarray, weights: np.ndarray, start: Mapping[str, float], categories: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per group, the threshold with the best weighted F1 on the held-out rows that say, or the start's.

    Args:
      scores: float32 ``[n, T]`` the adapted head's scores on the held-out rows.
      groups: ``[n, T]`` what those rows say (:func:`row_groups`, NaN where nothing).
      weights: ``[n]`` records each row stands for.
      start: the starting model's thresholds.
      categories: the groups, in column order.

    Returns:
      ``{group: {"threshold", "chosen_on", "rows", "attacks", and precision, recall, F1 when re-chosen}}``.
    """
    out = {}
    for j, group in enumerate(categories):
        said = ~np.isnan(groups[:, j])
        attacked = said & (groups[:, j] > 0.5)
        counts = {"rows": int(said.sum()), "attacks": int(attacked.sum())}
        if attacked.sum() >= MIN_ATTACKS and (said & ~attacked).any():
            chosen = threshold_for_f1(attacked[said], scores[said, j], weights[said])
            out[group] = {**{k: chosen[k] for k in ("threshold", "precision", "recall", "f1")}, **counts, "chosen_on": "held-out rows"}
        else:
            out[group] = {"threshold": float(start[group]), **counts, "chosen_on": "the starting model's"}
    return out
