"""RunInference's model handler for our Flax classifiers, and the model checks done at launch.

:class:`FlaxModelHandler` is a Beam ``ModelHandler``: ``load_model`` loads a
:class:`flaxmodel.Classifier` (parameters replicated on every local device of
the worker, batches split over them, jitted forward); RunInference keeps one per worker process, shared by its
threads through ``Shared``.  Each element it receives is already a padded,
bucket-shaped :class:`~pipelines.batching.Batch`, so ``batch_elements_kwargs``
pins RunInference's own batching to one element per call.  RunInference (not a
plain DoFn) is used for its standard model sharing, metrics and
``with_exception_handling`` dead-letter output.  Its batch latency lands in our
metrics namespace.  (``max_batch_weight`` is avoided: Beam 2.77 forwards it to
``BatchElements``, which rejects it.)

:func:`inspect_model` loads the model once at pipeline construction, so a bad
``--model`` fails before any data is read, and yields the labels, config and shape grid
the pipeline is built from.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from flaxmodel import AUTO_DTYPE, Classifier, EncoderConfig, load_classifier
from pipelines.batching import Batch
from pipelines.metrics import NAMESPACE


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the pipeline's construction needs to know about the model."""

    name: str
    labels: tuple[str, ...]
    max_length: int
    content_length: int
    weights_hash: str
    config: EncoderConfig
    # Local devices the model runs data parallel on, and their platform (cpu, gpu, tpu).
    devices: int = 1
    platform: str = "cpu"

    @property
    def model_id(self) -> str:
        return model_id(self.name, self.weights_hash)


def model_id(name: str, weights_hash: str) -> str:
    """The ``model`` column: checkpoint folder name and a hash of its weights."""
    return f"{name}@{weights_hash}"


def inspect_model(path: str | None, *, max_length: int, dtype: str = AUTO_DTYPE) -> ModelSpec:
    """Loads config, tokenizer and weights; raises the loader's error (with what to fix) if any is bad."""
    classifier = load_classifier(path, dtype=dtype, max_length=max_length)
    return ModelSpec(
        name=classifier.name,
        labels=classifier.labels,
        max_length=classifier.max_length,
        content_length=classifier.text_encoder.content_length,
        weights_hash=classifier.weights_hash,
        config=classifier.config,
        devices=len(classifier.devices),
        platform=classifier.platform,
    )


class FlaxModelHandler(ModelHandler[Batch, PredictionResult, Classifier]):
    """Runs padded batches through a Flax classifier; ``PredictionResult.inference`` is ``[windows, labels]``."""

    def __init__(
        self,
        model_path: str | None,
        *,
        max_length: int,
        batch_size: int,
        dtype: str = AUTO_DTYPE,
        compilation_cache_dir: str | None = None,
    ):
        super().__init__()
        self._model_path = model_path
        self._max_length = max_length
        self._batch_size = batch_size
        self._dtype = dtype
        self._compilation_cache_dir = compilation_cache_dir

    def load_model(self) -> Classifier:
        if self._compilation_cache_dir:
            import jax

            jax.config.update("jax_compilation_cache_dir", self._compilation_cache_dir)
            # Cache every bucket's program, however fast it compiled: a restarted worker then compiles none.
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        classifier = load_classifier(
            self._model_path, dtype=self._dtype, batch_size=self._batch_size, max_length=self._max_length
        )
        _ = classifier.weights_hash  # hashed here, once per process, not inside a timed batch
        return classifier

    def run_inference(
        self, batch: Sequence[Batch], model: Classifier, inference_args: Mapping[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        tag = model_id(model.name, model.weights_hash)
        for element in batch:
            windows = [window for item in element.items for window in item.windows]
            ids, mask = model.pad(windows, element.rows, element.length)
            yield PredictionResult(element, model.predict_padded(ids, mask)[: len(windows)], tag)

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": 1}

    def get_num_bytes(self, batch: Sequence[Batch]) -> int:
        # int32 ids and mask per padded cell.
        return sum(8 * element.rows * element.length for element in batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE
