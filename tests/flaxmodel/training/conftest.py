"""Shared training fixtures: a trivially learnable data set and the standard small run.

Every run trains the session's tiny random BERT (hidden size 32, two layers) on
friendly words against hostile ones.  Runs with equal settings share the
compiled train step (its static argument is compared by value), so tests vary
only what they check: each other setting costs a compilation.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any, Callable

import pytest

from flaxmodel.training import TrainConfig

FRIENDLY = ("great", "lovely", "nice", "thanks", "sharing", "weather", "today", "love")
HOSTILE = ("hate", "stupid", "idea", "away", "welcome", "nobody", "opinion", "not")
LABELS = ("friendly", "hostile")
# The standard run: 64 texts in batches of 16 make 4 steps per epoch.
STANDARD = dict(labels=LABELS, epochs=4, batch_size=16, max_length=16, learning_rate=1e-2, warmup_ratio=0.1, seed=0)


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """A command's main() configures the root logger; its handler must not outlive the test's captured stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def assert_one_error_line(err: str, prog: str, message: str) -> None:
    """A command's stderr ends in one ``PROG: error: ...`` line naming ``message``, with no traceback."""
    *_, last = err.rstrip("\n").split("\n")
    assert last.startswith(f"{prog}: error: ") and message in last, err
    assert "Traceback" not in err, err


def _write(path, count: int, seed: int, labels=LABELS) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(count):
            label = i % 2
            words = rng.choices(HOSTILE if label else FRIENDLY, k=rng.randint(2, 6))
            f.write(json.dumps({"text": " ".join(words), "label": labels[label]}) + "\n")


@pytest.fixture()
def fixture_data(tmp_path):
    _write(tmp_path / "train.jsonl", 64, seed=1)
    _write(tmp_path / "val.jsonl", 32, seed=2)
    return tmp_path


@pytest.fixture()
def base_folder(tiny_checkpoint) -> str:
    return str(tiny_checkpoint("bert", head=False))


@pytest.fixture()
def make_config(fixture_data, base_folder, tmp_path) -> Callable[..., TrainConfig]:
    """``make_config(name, **overrides)``: the standard run with its directory at ``tmp_path / name``."""

    def make(name: str = "run", **overrides: Any) -> TrainConfig:
        settings: dict[str, Any] = dict(
            STANDARD,
            train=str(fixture_data / "train.jsonl"),
            val=str(fixture_data / "val.jsonl"),
            output=str(tmp_path / name),
            model=base_folder,
        )
        return TrainConfig(**{**settings, **overrides})

    return make
