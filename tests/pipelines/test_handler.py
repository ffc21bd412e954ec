"""The RunInference model handler: padded batches in, the classifier's own probabilities out."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pipelines.batching import Batch
from pipelines.handler import FlaxModelHandler, inspect_model
from pipelines.records import Record
from pipelines.tokenizing import Tokenized
from tests.pipelines.conftest import LABELS


def _item(name: str, windows: list[list[int]]) -> Tokenized:
    return Tokenized(Record(name, "f", 0, name, {}), windows, sum(map(len, windows)), False)


@pytest.fixture
def restore_jax_cache_config():
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = {name: getattr(jax.config, name) for name in names}
    yield
    for name, value in before.items():
        jax.config.update(name, value)


def test_handler_runs_each_padded_batch_and_reports_the_model(model_dir, tmp_path, restore_jax_cache_config):
    handler = FlaxModelHandler(model_dir, max_length=32, batch_size=16, compilation_cache_dir=str(tmp_path))
    model = handler.load_model()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 1}

    windows = model.text_encoder.encode(["first text", "a second, longer text here", "third"])
    batch = Batch((_item("x", windows[:2]), _item("y", windows[2:])), rows=8, length=16)
    (result,) = handler.run_inference([batch], model)
    assert result.example is batch
    assert result.inference.shape == (3, len(LABELS))
    np.testing.assert_allclose(result.inference, model.predict_ids(windows), atol=1e-5)
    assert result.model_id == inspect_model(model_dir, max_length=32).model_id
