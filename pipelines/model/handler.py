"""RunInference's model handler for our Flax classifiers, and the model checks done at launch.

:class:`FlaxModelHandler` is a Beam ``ModelHandler`` whose elements are
:class:`~pipelines.tokenizing.TokenizedBlock` s (thousands of records' windows,
pinned to one element per call by ``batch_elements_kwargs``).  Its model is a
:class:`BlockRunner`: a :class:`flaxmodel.Classifier` (parameters replicated on
every local device of the worker, batches split over them, jitted forward) with
the block loop around it, which plans a block's batches on the grid
(:mod:`pipelines.batching`), pads each one and dispatches it.  JAX dispatches
asynchronously, so the runner pads and dispatches batch N+1 while the devices
compute batch N, keeping at most :data:`IN_FLIGHT_BATCHES` batches dispatched
and not yet read back.  A batch the model fails on marks its windows failed
(the records become ``inference_error`` dead letters downstream); the other
batches of the block are kept.

The row buckets are decided where the model loads, since only there are the
devices known: ``--batch_size`` 0 (automatic) means :data:`CPU_BATCH_ROWS` rows
on CPUs, where batches within cache run fastest, and
:data:`ACCELERATOR_BATCH_ROWS` on GPUs and TPUs, which need many rows per call
to be busy (the token cap is likewise the grid's automatic one: none there).

By default every SDK process loads its own model (RunInference's ``Shared``:
one per process, shared by its threads).  With ``model_copies`` > 0 the
handler asks Beam to share the model across the worker's SDK processes
(``share_model_across_processes``): that many copies live in a separate
model-server process, and every call goes through a proxy, which exposes the
model's methods only, so everything :meth:`FlaxModelHandler.run_inference`
needs is a :class:`BlockRunner` method, and only the windows travel to the
server, not the records.  The server process is forked from an SDK process,
which must therefore not have initialised JAX: nothing on the SDK side of the
pipeline touches a JAX device (planning happens inside the runner).  See
``deploy/README.md`` for when to share.  RunInference (not a plain DoFn) is used
for this standard model sharing, metrics and ``with_exception_handling``
dead-letter output; its batch latency lands in our metrics namespace.
(``max_batch_weight`` is avoided: Beam 2.77 forwards it to ``BatchElements``,
which rejects it.)

:func:`inspect_model` loads the model once at pipeline construction, so a bad
``--model`` fails before any data is read, and yields the labels, config and shape grid
the pipeline is built from.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from flaxmodel import AUTO_PRECISION, Classifier, EncoderConfig, ShapeGrid, load_classifier
from flaxmodel.inference.shapes import pad_windows
from flaxmodel.inference.tokenizer import TokenWindows
from pipelines.batching import PlannedBatch, plan_block
from pipelines.metrics import NAMESPACE, PRECISION_COUNTER_PREFIX
from pipelines.tokenizing import TokenizedBlock

# Batches dispatched and not yet read back: two let the host pad batch N+1 while the devices compute N.
IN_FLIGHT_BATCHES = 2
# Rows of the largest batch with --batch_size 0: on CPU the planner's token cap keeps batches within cache
# anyway (shapes.CPU_BATCH_TOKENS).  On GPUs and TPUs 1024 tweet-sized windows of MiniLM are ~0.7 TFLOP
# (0.65 GFLOP per 31-token text), milliseconds of device work per call against tens of microseconds of
# dispatch; not measured on a device here (no accelerator was available).
CPU_BATCH_ROWS = 64
ACCELERATOR_BATCH_ROWS = 1024


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
    # The precision the launching process's model runs in; each worker decides its own for "auto".
    precision: str = "float32"

    @property
    def model_id(self) -> str:
        return model_id(self.name, self.weights_hash, self.precision)


def model_id(name: str, weights_hash: str, precision: str) -> str:
    """The ``model`` column: checkpoint folder name, a hash of its weights and the precision that ran."""
    return f"{name}@{weights_hash}:{precision}"


def inspect_model(path: str | None, *, max_length: int, precision: str = AUTO_PRECISION) -> ModelSpec:
    """Loads config, tokenizer and weights; raises the loader's error (with what to fix) if any is bad."""
    classifier = load_classifier(path, precision=precision, max_length=max_length)
    return ModelSpec(
        name=classifier.name,
        labels=classifier.labels,
        max_length=classifier.max_length,
        content_length=classifier.text_encoder.content_length,
        weights_hash=classifier.weights_hash,
        config=classifier.config,
        devices=len(classifier.devices),
        platform=classifier.platform,
        precision=classifier.precision,
    )


def batch_rows(batch_size: int, platform: str) -> int:
    """Rows of the largest batch: ``batch_size``, or for 0 the automatic choice for ``platform``."""
    if batch_size:
        return batch_size
    return CPU_BATCH_ROWS if platform == "cpu" else ACCELERATOR_BATCH_ROWS


class WindowScores(NamedTuple):
    """What the model made of a block's windows.

    Attributes:
      probabilities: float32 ``[windows, labels]`` (zeros for failed windows).
      error_of_window: int32 ``[windows]``: -1, or the index in ``errors`` of the failure of its batch.
      errors: the failures, as ``repr`` of the exception.
      batches: model calls made.
      tokens: real tokens fed to the model, special tokens included.
      padded_tokens: cells of the padded batches.
    """

    probabilities: np.ndarray
    error_of_window: np.ndarray
    errors: tuple[str, ...]
    batches: int
    tokens: int
    padded_tokens: int


class BlockRunner:
    """A loaded classifier and the loop that runs a block's windows through it (see the module docstring).

    Only methods are used from outside, so that a proxy to a runner in a shared
    model process works like the runner itself.
    """

    def __init__(self, classifier: Classifier, *, batch_size: int, max_batch_tokens: int, sort_buffer: int):
        self._classifier = classifier
        rows = batch_rows(batch_size, classifier.platform)
        self._grid = ShapeGrid.for_model(classifier.config, classifier.max_length, rows, max_batch_tokens)
        encoder = classifier.text_encoder
        self._prefix, self._suffix = tuple(encoder.prefix), tuple(encoder.suffix)
        self._sort_buffer = sort_buffer
        self._model_id = model_id(classifier.name, classifier.weights_hash, classifier.precision)

    def model_id(self) -> str:
        """The ``model`` column of the rows this runner labels."""
        return self._model_id

    def precision(self) -> str:
        """The precision this runner's classifier computes in."""
        return self._classifier.precision

    def max_rows(self) -> int:
        """Rows of the largest batch on this runner's grid."""
        return self._grid.max_rows

    def run(self, windows: TokenWindows) -> WindowScores:
        """Plans, pads and runs all of a block's windows, at most :data:`IN_FLIGHT_BATCHES` in flight.

        Args:
          windows: the block's token windows (``W`` of them).

        Returns:
          Their :class:`WindowScores`, probabilities ``[W, labels]``.
        """
        specials = len(self._prefix) + len(self._suffix)
        batches = plan_block(windows, self._grid, specials, self._sort_buffer, self._classifier.compiled_shapes())
        scores = np.zeros((len(windows.window_length), self._classifier.config.num_labels), np.float32)
        error_of_window = np.full(len(windows.window_length), -1, np.int32)
        errors: list[str] = []

        def failed(batch: PlannedBatch, err: Exception) -> None:
            error_of_window[batch.windows] = len(errors)
            errors.append(repr(err))

        def read_back(batch: PlannedBatch, result: Any) -> None:
            try:
                scores[batch.windows] = np.asarray(result)[: len(batch.windows)]
            except Exception as err:  # a device error surfaces when the result is read; it fails its batch only
                failed(batch, err)

        in_flight: collections.deque = collections.deque()
        for batch in batches:
            try:
                ids, mask = pad_windows(
                    windows.tokens,
                    windows.window_start[batch.windows],
                    windows.window_length[batch.windows],
                    batch.rows,
                    batch.length,
                    self._classifier.pad_id,
                    self._prefix,
                    self._suffix,
                )
                in_flight.append((batch, self._classifier.dispatch_padded(ids, mask)))
            except Exception as err:  # as RunInference would for a whole element, but for this batch alone
                failed(batch, err)
            if len(in_flight) > IN_FLIGHT_BATCHES:
                read_back(*in_flight.popleft())
        while in_flight:
            read_back(*in_flight.popleft())
        tokens = int(windows.window_length.sum()) + specials * len(windows.window_length)
        padded = sum(batch.rows * batch.length for batch in batches)
        return WindowScores(scores, error_of_window, tuple(errors), len(batches), tokens, padded)


class FlaxModelHandler(ModelHandler[TokenizedBlock, PredictionResult, BlockRunner]):
    """Runs tokenized blocks through a Flax classifier; ``PredictionResult.inference`` is a :class:`WindowScores`."""

    def __init__(
        self,
        model_path: str | None,
        *,
        max_length: int,
        batch_size: int,
        max_batch_tokens: int = 0,
        sort_buffer: int = 4096,
        precision: str = AUTO_PRECISION,
        compilation_cache_dir: str | None = None,
        model_copies: int = 0,
    ):
        super().__init__()
        self._model_path = model_path
        self._max_length = max_length
        self._batch_size = batch_size
        self._max_batch_tokens = max_batch_tokens
        self._sort_buffer = sort_buffer
        self._precision = precision
        self._compilation_cache_dir = compilation_cache_dir
        self._copies = model_copies

    def load_model(self) -> BlockRunner:
        if self._compilation_cache_dir:
            import jax

            jax.config.update("jax_compilation_cache_dir", self._compilation_cache_dir)
            # Cache every bucket's program, however fast it compiled: a restarted worker then compiles none.
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        classifier = load_classifier(
            self._model_path,
            precision=self._precision,
            batch_size=self._batch_size or CPU_BATCH_ROWS,
            max_length=self._max_length,
        )
        return BlockRunner(
            classifier,
            batch_size=self._batch_size,
            max_batch_tokens=self._max_batch_tokens,
            sort_buffer=self._sort_buffer,
        )

    def run_inference(
        self, batch: Sequence[TokenizedBlock], model: BlockRunner, inference_args: Mapping[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        tag = model.model_id()
        # Batches per precision: the run summary says which path labelled the records.
        batches = Metrics.counter(NAMESPACE, PRECISION_COUNTER_PREFIX + model.precision())
        for element in batch:
            scores = model.run(element.windows)
            batches.inc(scores.batches)
            yield PredictionResult(element, scores, tag)

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": 1}

    def share_model_across_processes(self) -> bool:
        return self._copies > 0

    def model_copies(self) -> int:
        return max(self._copies, 1)

    def get_num_bytes(self, batch: Sequence[TokenizedBlock]) -> int:
        # int32 ids per token of the windows sent to the model.
        return sum(4 * len(element.windows.tokens) for element in batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE
