"""The RunInference model handler: a block's windows in, the classifier's own probabilities out,
batch N+1 dispatched before batch N is read back, a failing batch failing its windows only."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from flaxmodel import OptionError, resolve_model
from pipelines.model import handler as H
from pipelines.model.handler import BlockRunner, FlaxModelHandler, RunSettings
from pipelines.model.tokenizing import TokenizedBlock
from flaxmodel.records import RecordBlock
from tests.fixtures import LONG_TEXTS, TEXTS
from tests.pipelines.conftest import LABELS

MAX_LENGTH, STRIDE, MAX_WINDOWS = 32, 8, 4


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = {name: getattr(jax.config, name) for name in names}
    yield str(tmp_path_factory.mktemp("jax-cache"))
    for name, value in before.items():
        jax.config.update(name, value)


@pytest.fixture(scope="module")
def loaded(model_dir, cache_dir):
    model = resolve_model(model_dir, max_length=MAX_LENGTH)
    handler = FlaxModelHandler(model, RunSettings(batch_size=16, compilation_cache_dir=cache_dir))
    return handler, handler.load_model()


def _tokenized(runner: BlockRunner, texts: list[str]) -> TokenizedBlock:
    records = RecordBlock("f", np.arange(len(texts)), [f"f:{i}" for i in range(len(texts))], texts, {})
    windows = runner._classifier.tokenizer.encode_block(texts, STRIDE, MAX_WINDOWS)
    return TokenizedBlock(records, np.arange(len(texts)), windows)


def _window_ids(runner: BlockRunner, texts: list[str]) -> list[list[int]]:
    return [ids for w in runner._classifier.tokenizer.encode_windows(texts, STRIDE, MAX_WINDOWS) for ids in w.ids]


TEXTS_AND_LONG = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(24)] + list(LONG_TEXTS)


def test_a_block_runs_in_grid_batches_and_gives_the_classifiers_probabilities(loaded, cache_dir, model_dir):
    handler, runner = loaded
    assert jax.config.jax_compilation_cache_dir == cache_dir
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 1}
    element = _tokenized(runner, TEXTS_AND_LONG)
    (result,) = handler.run_inference([element], runner)
    assert result.example is element
    scores = result.inference
    windows = _window_ids(runner, TEXTS_AND_LONG)
    assert scores.probabilities.shape == (len(windows), len(LABELS))
    assert (scores.error_of_window == -1).all() and scores.errors == ()
    assert scores.batches >= len(windows) / 16
    assert scores.tokens == sum(map(len, windows)) <= scores.padded_tokens
    np.testing.assert_allclose(scores.probabilities, runner._classifier.predict_ids(windows), atol=1e-5)
    classifier = runner._classifier
    # The worker's own identity: the launcher's reference, with the precision this worker chose.
    assert result.model_id == classifier.identity == resolve_model(model_dir).identity(classifier.precision)


class _Recorded:
    """A dispatched batch's stand-in: notes when it is read back."""

    def __init__(self, events: list, index: int, rows: int, fail: bool):
        self._events, self._index, self._rows, self._fail = events, index, rows, fail

    def __array__(self, dtype=None, copy=None):
        self._events.append(("read", self._index))
        if self._fail:
            raise RuntimeError(f"device lost in batch {self._index}")
        return np.full((self._rows, len(LABELS)), self._index, np.float32)


def test_batches_overlap_a_bounded_number_in_flight_and_a_failure_stays_in_its_batch(loaded, monkeypatch):
    _, runner = loaded
    events: list = []

    def dispatch(input_ids, attention_mask):
        index = sum(1 for kind, _ in events if kind == "dispatch")
        events.append(("dispatch", index))
        return _Recorded(events, index, input_ids.shape[0], fail=index == 1)

    monkeypatch.setattr(runner._classifier, "dispatch_padded", dispatch)
    # Every shape compiled, so that the plan cuts batches by the texts' lengths alone (enough of them).
    monkeypatch.setattr(runner._classifier, "compiled_shapes", lambda: frozenset(runner._grid.costs))
    scores = runner.run(_tokenized(runner, TEXTS_AND_LONG).windows)
    n = scores.batches
    assert n > H.IN_FLIGHT_BATCHES + 1
    # Batch i is read back only once batch i + IN_FLIGHT_BATCHES has been dispatched (or all were).
    for i in range(n):
        read = events.index(("read", i))
        assert events.index(("dispatch", min(i + H.IN_FLIGHT_BATCHES, n - 1))) < read
        if i + H.IN_FLIGHT_BATCHES + 1 < n:
            assert read < events.index(("dispatch", i + H.IN_FLIGHT_BATCHES + 1))
    failed = scores.error_of_window >= 0
    assert scores.errors == ("RuntimeError('device lost in batch 1')",)
    assert failed.any() and not failed.all()
    assert (scores.probabilities[failed] == 0).all() and (scores.probabilities[~failed] != 1).all()


class _MethodsOnly:
    """Like the proxy of a model shared across processes: methods, no attributes."""

    def __init__(self, runner: BlockRunner):
        self.__runner = runner

    def __getattr__(self, name: str):
        value = getattr(self.__runner, name)
        if not callable(value) or name.startswith("_"):
            raise AttributeError(f"a proxy exposes methods only, not {name!r}")
        return value


def test_run_inference_needs_only_the_models_methods_as_a_shared_model_proxy_offers(loaded):
    handler, runner = loaded
    element = _tokenized(runner, TEXTS_AND_LONG[:5])
    (direct,) = handler.run_inference([element], runner)
    (proxied,) = handler.run_inference([element], _MethodsOnly(runner))
    np.testing.assert_array_equal(proxied.inference.probabilities, direct.inference.probabilities)
    assert proxied.model_id == direct.model_id


def test_model_copies_turn_on_sharing_across_processes(model_dir):
    model = resolve_model(model_dir, max_length=MAX_LENGTH)
    own = FlaxModelHandler(model, RunSettings(batch_size=16))
    shared = FlaxModelHandler(model, RunSettings(batch_size=16, model_copies=2))
    assert (own.share_model_across_processes(), own.model_copies()) == (False, 1)
    assert (shared.share_model_across_processes(), shared.model_copies()) == (True, 2)


def test_a_model_update_takes_a_checkpoint_of_the_same_labels_and_refuses_others(model_dir, tiny_checkpoint):
    handler = FlaxModelHandler(resolve_model(tiny_checkpoint("bert"), max_length=MAX_LENGTH))
    handler.update_model_path(tiny_checkpoint("roberta"))
    assert handler.load_model().model_id().startswith(resolve_model(tiny_checkpoint("roberta")).name + "@")
    with pytest.raises(OptionError, match="labels"):
        FlaxModelHandler(resolve_model(model_dir)).update_model_path(tiny_checkpoint("bert", labels=("x", "y")))
