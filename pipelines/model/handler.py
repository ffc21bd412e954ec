"""RunInference's model handler for our Flax classifiers.

:class:`FlaxModelHandler` is a Beam ``ModelHandler`` whose elements are
:class:`~pipelines.model.tokenizing.TokenizedBlock` s (thousands of records' windows,
pinned to one element per call by ``batch_elements_kwargs``).  It is built from
the launcher's :class:`flaxmodel.ModelRef` and loads the weights from it once
per worker process.  Its model is a :class:`BlockRunner`: a
:class:`flaxmodel.Classifier` (parameters replicated on every local device of
the worker, batches split over them, jitted forward, its shape grid made for
the worker's platform) with the block loop around it, which plans a block's
batches on that grid (:mod:`pipelines.model.batching`), pads each one and
dispatches it.  JAX dispatches asynchronously, so the runner pads and
dispatches batch N+1 while the devices compute batch N, keeping at most
:data:`IN_FLIGHT_BATCHES` batches dispatched and not yet read back.  A batch
the model fails on marks its windows failed (the records become
``inference_error`` dead letters downstream); the other batches of the block
are kept.

The worker decides what only it can know: its devices, the grid's rows and
token cap for their platform (``--batch_size`` / ``--max_batch_tokens`` 0), and
for ``--precision auto`` the path it runs; every result carries the worker's
identity (``name@hash:precision``), and the ``model:<identity>`` counter,
the ``precision_choice:<given|device|measured|reused>`` counter and the
``devices:<platform>`` gauge report them to the run summary.  A measured
choice is stored (``calibration_cache_dir``, by default next to the compilation
cache) and reused by later workers and runs on the same kind of machine.

By default every SDK process loads its own model (RunInference's ``Shared``:
one per process, shared by its threads).  With ``model_copies`` > 0 the
handler asks Beam to share the model across the worker's SDK processes
(``share_model_across_processes``): that many copies live in a separate
model-server process, and every call goes through a proxy, which exposes the
model's methods only, so everything :meth:`FlaxModelHandler.run_inference`
needs is a :class:`BlockRunner` method, and only the windows travel to the
server, not the records.  The server process is forked from an SDK process,
which must therefore not have initialised JAX: nothing on the SDK side of the
pipeline touches a JAX device.  See ``deploy/README.md`` for when to share.
(``max_batch_weight`` is avoided: Beam 2.77 forwards it to ``BatchElements``,
which rejects it.)
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from flaxmodel import AUTO_PRECISION, Classifier, ModelRef, TokenWindows, load_classifier, pad_windows, resolve_model
from flaxmodel import OptionError
from pipelines.model.batching import PlannedBatch, plan_block
from pipelines.model.tokenizing import TokenizedBlock
from pipelines.names import DEVICES_GAUGE_PREFIX, NAMESPACE, PRECISION_CHOICE_PREFIX

# The calibration store's folder inside --compilation_cache_dir when --calibration_cache_dir is not given.
CALIBRATION_SUBDIR = "calibration"
# Batches dispatched and not yet read back: two let the host pad batch N+1 while the devices compute N.
IN_FLIGHT_BATCHES = 2


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How a worker runs the model: requests, each worker deciding what it means on its devices.

    Attributes:
      batch_size: rows of the largest batch (0: automatic for the platform).
      max_batch_tokens: padded tokens per batch of several records (0: automatic).
      sort_buffer: windows sorted by length together before they are cut into batches.
      precision: ``auto`` or a path of :data:`flaxmodel.PRECISIONS`.
      compilation_cache_dir: persistent XLA compilation cache, or None.
      calibration_cache_dir: where ``auto`` stores and reuses its measured choice (None: ``calibration/``
        inside ``compilation_cache_dir`` when that is set, else nothing is stored).
      model_copies: 0: a model per SDK process; N: N copies shared by the worker's processes.
    """

    batch_size: int = 0
    max_batch_tokens: int = 0
    sort_buffer: int = 4096
    precision: str = AUTO_PRECISION
    compilation_cache_dir: str | None = None
    calibration_cache_dir: str | None = None
    model_copies: int = 0

    @property
    def calibration_dir(self) -> str | None:
        """The calibration store's folder: given, else ``calibration/`` next to the compilation cache."""
        if self.calibration_cache_dir or not self.compilation_cache_dir:
            return self.calibration_cache_dir
        return self.compilation_cache_dir.rstrip("/") + "/" + CALIBRATION_SUBDIR


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

    def __init__(self, classifier: Classifier, *, sort_buffer: int):
        self._classifier = classifier
        self._grid = classifier.grid
        encoder = classifier.tokenizer
        self._prefix, self._suffix = tuple(encoder.prefix), tuple(encoder.suffix)
        self._sort_buffer = sort_buffer

    def model_id(self) -> str:
        """The ``model`` column of the rows this runner labels: ``name@hash:precision`` as this worker runs it."""
        return self._classifier.identity

    def devices(self) -> tuple[str, int]:
        """The platform of this runner's devices and how many it runs on."""
        return self._classifier.platform, len(self._classifier.devices)

    def precision_choice(self) -> str:
        """How this worker came to its precision: ``given``, ``device``, ``measured`` or ``reused``."""
        return self._classifier.precision_source

    def max_rows(self) -> int:
        """Rows of the largest batch on this runner's grid."""
        return self._grid.max_rows

    def run(self, windows: TokenWindows) -> WindowScores:
        """Plans, pads and runs all of a block's windows, at most :data:`IN_FLIGHT_BATCHES` in flight.

        Args:
          windows: the block's token windows (``W`` of them).

        Returns:
          Their :class:`WindowScores`, scores ``[W, num_outputs]`` (classes, then target groups).
        """
        specials = len(self._prefix) + len(self._suffix)
        batches = plan_block(windows, self._grid, specials, self._sort_buffer, self._classifier.compiled_shapes())
        scores = np.zeros((len(windows.window_length), self._classifier.config.num_outputs), np.float32)
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
    """Runs tokenized blocks through a Flax classifier; ``PredictionResult.inference`` is a :class:`WindowScores`.

    Args:
      model: the launcher's reference of the model (weights load from it on the worker).
      settings: how each worker runs it.
    """

    def __init__(self, model: ModelRef, settings: RunSettings = RunSettings()):
        super().__init__()
        self._model = model
        self._settings = settings

    def load_model(self) -> BlockRunner:
        s = self._settings
        if s.compilation_cache_dir:
            import jax

            jax.config.update("jax_compilation_cache_dir", s.compilation_cache_dir)
            # Cache every bucket's program, however fast it compiled: a restarted worker then compiles none.
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        classifier = load_classifier(
            self._model,
            precision=s.precision,
            batch_size=s.batch_size,
            max_batch_tokens=s.max_batch_tokens,
            calibration_cache_dir=s.calibration_dir,
        )
        return BlockRunner(classifier, sort_buffer=s.sort_buffer)

    def run_inference(
        self, batch: Sequence[TokenizedBlock], model: BlockRunner, inference_args: Mapping[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        tag = model.model_id()
        platform, count = model.devices()
        Metrics.gauge(NAMESPACE, DEVICES_GAUGE_PREFIX + platform).set(count)
        choice = Metrics.counter(NAMESPACE, PRECISION_CHOICE_PREFIX + model.precision_choice())
        for element in batch:
            choice.inc(len(element.text_of))
            yield PredictionResult(element, model.run(element.windows), tag)

    def update_model_path(self, model_path: str | None = None) -> None:
        """Points the handler at another checkpoint of the same labels (Beam's model updates)."""
        if model_path is None:
            return
        updated = resolve_model(model_path, max_length=self._model.max_length)
        if updated.labels != self._model.labels:
            raise OptionError(
                f"{model_path}: labels {list(updated.labels)} differ from the running model's "
                f"{list(self._model.labels)}, which the output schema was built from"
            )
        self._model = updated

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": 1}

    def share_model_across_processes(self) -> bool:
        return self._settings.model_copies > 0

    def model_copies(self) -> int:
        return max(self._settings.model_copies, 1)

    def get_num_bytes(self, batch: Sequence[TokenizedBlock]) -> int:
        # int32 ids per token of the windows sent to the model.
        return sum(4 * len(element.windows.tokens) for element in batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE
