"""Running an adapting run's training units once each, across interruptions, under one progress bar.

A unit's results (the held-out probabilities and the trained parameters after
each epoch) are written to the run's work folder as soon as it finishes, under
the unit's name; a rerun with the same settings and the same rows reads them
back instead of training again.  Different settings in the same place are
refused: the folder holds another run's work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np
from flax import traverse_util

from flaxmodel.ckpts import files
from flaxmodel.core.model import Params
from flaxmodel.errors import ConfigError
from flaxmodel.training.adapt_config import AdaptConfig
from flaxmodel.training.adapt_run import Unit, train_unit, unit_steps

SETTINGS = "settings.json"
Results = tuple[list[np.ndarray], list[Params]]


def work_folder(output: str) -> str:
    """Where a run's unit results wait: beside a local output, in the temporary folder for a remote one."""
    if files.is_remote(output):
        return os.path.join(tempfile.gettempdir(), "moderate-adapt-" + hashlib.sha256(output.encode()).hexdigest()[:16])
    return os.path.abspath(output.rstrip("/")) + ".adapting"


def _save(path: str, results: Results) -> None:
    arrays = {f"held_{e}": p for e, p in enumerate(results[0])}
    for e, params in enumerate(results[1]):
        arrays.update({f"params_{e}/" + "/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()})
    partial = path + ".partial.npz"
    np.savez(partial, **arrays)
    os.replace(partial, path)


def _load(path: str, epochs: int) -> Results:
    with np.load(path) as saved:
        held = [saved[f"held_{e}"] for e in range(epochs)]
        params = []
        for e in range(epochs):
            prefix = f"params_{e}/"
            flat = {tuple(k[len(prefix) :].split("/")): saved[k] for k in saved.files if k.startswith(prefix)}
            params.append(traverse_util.unflatten_dict(flat))
    return held, params


class UnitRunner:
    """Runs named units, reading back those an earlier invocation finished; counts and shows the steps."""

    def __init__(self, folder: str, stop_after: int | None, progress: bool):
        self.folder = folder
        self.stop_after = stop_after
        self.progress = progress
        self.trained = 0
        self.context: dict[str, Any] = {}
        self._bar = None

    @classmethod
    def open(cls, config: AdaptConfig, fingerprint: dict[str, Any], *, stop_after: int | None, progress: bool) -> "UnitRunner":
        """The runner of ``config``'s run; its work folder must be new or hold the same run's work.

        Raises:
          ConfigError: when the work folder holds a run with other settings or rows.
        """
        folder = work_folder(config.output)
        # Where compiled programs are cached does not change the run.
        run = {k: v for k, v in config.to_json().items() if k != "compilation_cache_dir"}
        settings = {"settings": run, "data": fingerprint}
        path = os.path.join(folder, SETTINGS)
        if os.path.exists(path):
            with open(path) as f:
                if json.load(f) != settings:
                    raise ConfigError(
                        f"{folder} holds an interrupted adapting run with other settings or rows: rerun that command "
                        "to finish it, or delete the folder"
                    )
        else:
            os.makedirs(folder, exist_ok=True)
            with open(path, "w") as f:
                json.dump(settings, f, indent=2)
        return cls(folder, stop_after, progress)

    def attach(self, **context: Any) -> None:
        """What every unit trains with: ``cache``, ``targets``, ``unlabeled``, ``upper``, ``spec``, ``batch_rows``."""
        self.context = context

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, f"{name}.npz")

    def steps(self, unit: Unit) -> int:
        c = self.context
        return unit_steps(unit, c["unlabeled"], c["cache"].lengths(), c["batch_rows"])

    def plan(self, units: list[tuple[str, Unit]]) -> None:
        """Adds the steps of units still to train to the progress bar's total."""
        todo = sum(self.steps(unit) for name, unit in units if not os.path.exists(self._path(name)))
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=0, unit="step", desc="adapting", disable=not self.progress, dynamic_ncols=True)
        self._bar.total += todo
        self._bar.refresh()

    def stopped(self) -> bool:
        return self.stop_after is not None and self.trained >= self.stop_after

    def run(self, name: str, unit: Unit) -> Results | None:
        """The unit's results, trained now or read back; None once ``stop_after`` units were trained."""
        path = self._path(name)
        if os.path.exists(path):
            return _load(path, unit.epochs)
        if self.stopped():
            return None
        if self._bar is None:
            self.plan([(name, unit)])
        c = self.context
        results = train_unit(
            unit, cache=c["cache"], targets=c["targets"], unlabeled=c["unlabeled"], upper=c["upper"], spec=c["spec"],
            batch_rows=c["batch_rows"], on_step=lambda: self._bar.update(1),
        )  # fmt: skip
        _save(path, results)
        self.trained += 1
        return results

    def close(self, *, remove: bool) -> None:
        """Closes the bar; with ``remove``, deletes the work folder (the model is written).  Returns None."""
        if self._bar is not None:
            self._bar.close()
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)
