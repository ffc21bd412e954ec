"""Session-wide test fixtures: tiny checkpoint folders built once, the MiniLM folder, float32 under ``auto``.

Building a tiny model with transformers takes a fraction of a second, but every
test module asks for the same few, so :func:`tiny_checkpoint` caches each folder
per session under pytest's temporary directory.  torch (the test-only reference)
is held to two threads: CI machines have two cores.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable

import pytest

# Tests never reach a model hub: set before transformers reads it at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from flaxmodel.ckpts.default_model import minilm_path  # noqa: E402
from flaxmodel.inference import predictor  # noqa: E402
from tests.fixtures import make_tiny_checkpoint  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def cpu_without_fast_paths():
    """``auto`` precision resolves to float32 in this process, as on CI's AVX2-only CPU.

    On a CPU with bfloat16 or VNNI instructions ``auto`` times those paths at
    every load and keeps the fastest, so two classifiers a test compares can
    run different paths (seen: 2e-5 to 2e-3 apart, and a probe shape compiled
    that the planner then prefers).  Calibration has its own tests, with
    injected candidates and timings; processes a test starts get
    ``--precision float32`` (or ``precision="float32"``) instead.
    Session-scoped so that module-scoped classifiers are built under it.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predictor, "cpu_flags", frozenset)
        yield


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., pathlib.Path]:
    """``tiny_checkpoint(architecture, **kwargs)``: a cached :func:`make_tiny_checkpoint` folder.

    Treat the folder as read-only; copy it (``shutil.copytree``) before breaking it.
    """
    built: dict[tuple, pathlib.Path] = {}

    def build(architecture: str, **kwargs: Any) -> pathlib.Path:
        key = (architecture, *sorted((k, repr(v)) for k, v in kwargs.items()))
        if key not in built:
            built[key] = make_tiny_checkpoint(tmp_path_factory.mktemp(architecture), architecture, **kwargs)
        return built[key]

    return build


@pytest.fixture(scope="session")
def minilm_folder() -> str:
    return minilm_path()
