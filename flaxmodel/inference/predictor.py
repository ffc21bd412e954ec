"""Jitted inference over the model's shape grid, and ``load_classifier``.

A :class:`Classifier` pads every batch to a shape of its
:class:`~flaxmodel.inference.planner.ShapeGrid`, so it compiles at most once per
bucket however many texts it sees; ``predict_ids`` sorts texts by length and
runs them in the cuts the grid's planner finds cheapest.  The softmax (or
sigmoid) is fused into the jitted function, and the same :class:`Classifier` is
safe to share between threads.  It runs data parallel over every local device
(all chips of a TPU host, all GPUs of a VM; XLA's host platform on CPU, one
device unless ``--xla_force_host_platform_device_count`` says otherwise):
parameters are replicated once, each batch's rows are split over a one-axis
mesh, and a batch whose rows do not divide by the device count gets empty
rows, so any grid shape runs on any host.  Its precision (float32, bfloat16 or
int8 matrix multiplies, :mod:`flaxmodel.core.precision`) is fixed at load:
given, or ``auto`` (:mod:`flaxmodel.inference.calibration`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from typing import Callable, Sequence

import jax
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flaxmodel.ckpts.loader import HASH_CHARS, load_checkpoint
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.model import Params, apply, probabilities
from flaxmodel.core.precision import COMPUTE_DTYPES, PRECISIONS, prepare_params
from flaxmodel.errors import ConfigError
from flaxmodel.inference.calibration import (
    AUTO_PRECISION,
    Calibration,
    CalibrationKey,
    CalibrationStore,
    Measure,
    accelerator_precision,
    calibrate,
    cpu_candidates,
    cpu_flags,
    machine_kind,
    probe_batch,
    stored_or_measured,
    time_call,
)
from flaxmodel.inference.reference import ModelRef, resolve_model
from flaxmodel.inference.planner import grid_for, predict_in_batches
from flaxmodel.inference.tokenizer import Tokenizer

# The precisions training computes in (the differentiable ones); inference adds int8.
DTYPES = {name: COMPUTE_DTYPES[name] for name in ("float32", "bfloat16")}
# How a classifier came to its precision (:attr:`Classifier.precision_source`): given by the caller; fixed by
# the device (accelerators, and CPUs with no faster path to try); measured at this load; or reused from a
# calibration stored by an earlier load on the same kind of machine.
PRECISION_SOURCES = ("given", "device", "measured", "reused")

log = logging.getLogger(__name__)


def _forward(params: Params, input_ids: jax.Array, attention_mask: jax.Array, *, config, dtype) -> jax.Array:
    return probabilities(apply(params, input_ids, attention_mask, config=config, dtype=dtype), config)


class Classifier:
    """A loaded text classifier: tokenizer, parameters on device, jitted forward.

    ``precision``: ``"auto"`` or one of :data:`~flaxmodel.core.precision.PRECISIONS`; :attr:`precision` is
    the path that runs, :attr:`calibration` what ``auto`` measured on a CPU (None if nothing).
    ``batch_size`` and ``max_batch_tokens`` shape its grid (0: automatic for the devices' platform,
    :func:`~flaxmodel.inference.planner.grid_for`).  ``weights_hash`` names the weights in :attr:`identity`
    (default: a hash of ``params``, for models without files).  ``candidates`` and ``measure`` override
    the paths a CPU calibration tries (default: those with CPU instructions) and its timer.
    ``calibration_cache_dir`` keeps what ``auto`` measured per machine kind and model
    (:class:`~flaxmodel.inference.calibration.CalibrationStore`): a later load there reuses it
    instead of timing again.  :attr:`precision_source` says which of :data:`PRECISION_SOURCES` applied.
    """

    def __init__(
        self,
        config: EncoderConfig,
        params: Params,
        tokenizer: Tokenizer,
        *,
        name: str = "model",
        weights_hash: str | None = None,
        precision: str = AUTO_PRECISION,
        batch_size: int = 0,
        max_batch_tokens: int = 0,
        devices: Sequence[jax.Device] | None = None,
        candidates: Sequence[str] | None = None,
        measure: Measure | None = None,
        calibration_cache_dir: str | None = None,
    ):
        if precision not in (AUTO_PRECISION, *PRECISIONS):
            raise ConfigError(f"precision must be {AUTO_PRECISION!r} or one of {list(PRECISIONS)}, got {precision!r}")
        self.devices = tuple(devices or jax.local_devices())
        self.config = config
        self.labels = config.labels
        self.targets = config.targets
        self.name = name
        self._weights_hash = weights_hash
        self.tokenizer = tokenizer
        self.max_length = tokenizer.max_length
        rows, tokens = batch_size, max_batch_tokens
        self.grid = grid_for(config, self.max_length, self.platform, batch_size=rows, max_batch_tokens=tokens)
        self.pad_id = config.pad_token_id
        self.host_params = params
        mesh = Mesh(np.array(self.devices), ("rows",))
        self._replicated, self._by_rows = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("rows"))
        self._shapes: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        self.calibration: Calibration | None = None
        self.precision_source = "given" if precision != AUTO_PRECISION else "device"
        built = None
        if precision == AUTO_PRECISION:
            precision = accelerator_precision(self.devices[0])
            if precision is None:
                # time_call is looked up here, so that a test can replace it for a whole pipeline run.
                precision, built = _calibrate_on_cpu(self, candidates, measure or time_call, calibration_cache_dir)
        self.precision = precision
        self.params, self._jitted = built or _build(self, precision)

    @property
    def num_compiles(self) -> int:
        """Distinct shapes run so far, rows rounded up to a multiple of the devices: each compiled once."""
        return len({(rows + -rows % len(self.devices), length) for rows, length in self.compiled_shapes()})

    @property
    def identity(self) -> str:
        """The ``model`` column of the rows this classifier labels: ``name@weights_hash:precision``."""
        return f"{self.name}@{self.weights_hash}:{self.precision}"

    @functools.cached_property
    def weights_hash(self) -> str:
        """Short SHA-256 telling which weights labelled a row: of the model's files, else of the parameters."""
        return self._weights_hash or params_hash(self.host_params)

    @property
    def platform(self) -> str:
        """The devices' platform: ``cpu``, ``gpu`` or ``tpu``."""
        return self.devices[0].platform

    def compiled_shapes(self) -> frozenset[tuple[int, int]]:
        """The ``(rows, length)`` batch shapes run so far, whose programs are compiled."""
        with self._lock:
            return frozenset(self._shapes)

    def _dispatch(self, params: Params, jitted: Callable, input_ids: np.ndarray, attention_mask: np.ndarray) -> jax.Array:
        """Starts one batch (rows padded to a multiple of the device count) and returns without waiting."""
        extra = -input_ids.shape[0] % len(self.devices)
        if extra:
            input_ids = np.pad(input_ids, ((0, extra), (0, 0)), constant_values=self.pad_id)
            attention_mask = np.pad(attention_mask, ((0, extra), (0, 0)))
        return jitted(params, input_ids, attention_mask)

    def _run(self, params: Params, jitted: Callable, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return np.asarray(self._dispatch(params, jitted, input_ids, attention_mask))[: input_ids.shape[0]]

    def dispatch_padded(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> jax.Array:
        """Starts one grid-shaped ``[rows, length]`` batch on the devices and returns at once.

        Returns:
          The scores as a device array ``[rows rounded up to a multiple of the device
          count, config.num_outputs]`` (class probabilities, then target scores); reading it (``np.asarray``) waits for them, and raises if the
          batch failed on the device.
        """
        if input_ids.shape not in self._shapes:
            with self._lock:
                self._shapes.add(input_ids.shape)
        return self._dispatch(self.params, self._jitted, input_ids, attention_mask)

    def predict_padded(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Scores ``[rows, config.num_outputs]`` of one grid-shaped ``[rows, length]`` batch."""
        return np.asarray(self.dispatch_padded(input_ids, attention_mask))[: input_ids.shape[0]]

    def predict_ids(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Scores ``[n, config.num_outputs]`` for token id sequences, in input order: the class probabilities,
        then one target score per :attr:`targets` category; run sorted by length in the grid-shaped batches
        the grid's planner picks, preferring shapes already compiled."""
        return predict_in_batches(
            self.predict_padded, sequences, self.grid, self.pad_id, self.config.num_outputs, self.compiled_shapes()
        )

    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        """Scores ``[n_texts, config.num_outputs]`` of :meth:`predict_ids`; texts past ``max_length`` are truncated."""
        if isinstance(texts, str):
            raise TypeError("the predict methods take a sequence of texts, not one string")
        if not len(texts):
            return np.zeros((0, self.config.num_outputs), dtype=np.float32)
        return self.predict_ids(self.tokenizer.encode(texts))

    def class_probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Class columns ``[n, n_labels]`` of any predict method's scores ``[n, config.num_outputs]``."""
        return split_scores(scores, self.config)[0]

    def target_scores(self, scores: np.ndarray) -> np.ndarray:
        """Target-group columns ``[n, len(targets)]`` of such scores (none without a head)."""
        return split_scores(scores, self.config)[1]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities ``[n_texts, n_labels]``; texts past ``max_length`` are truncated."""
        return self.class_probabilities(self.predict_scores(texts))

    def predict_targets(self, texts: Sequence[str]) -> np.ndarray:
        """Target-group scores ``[n_texts, len(targets)]`` ("the text attacks this group"); no columns without a head."""
        return self.target_scores(self.predict_scores(texts))

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable label name of each text."""
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]


def split_scores(scores: np.ndarray, config: EncoderConfig) -> tuple[np.ndarray, np.ndarray]:
    """The class and target-group columns of a model's scores, whatever heads it has.

    Args:
      scores: ``[..., config.num_outputs]``, as the predict methods return them.
      config: the model's configuration.

    Returns:
      ``(classes [..., num_labels], targets [..., len(config.targets)])``.

    Raises:
      ValueError: the scores' width is not the model's output width (scores of another model, or a
        forward that changed its outputs).
    """
    if scores.shape[-1] != config.num_outputs:
        raise ValueError(f"scores have {scores.shape[-1]} columns; this model outputs {config.num_outputs}")
    return scores[..., : config.num_labels], scores[..., config.num_labels :]


def _build(c: Classifier, precision: str) -> tuple[Params, Callable]:
    """Parameters prepared for ``precision`` on ``c``'s devices, and the jitted forward reading them."""
    params = jax.device_put(prepare_params(c.host_params, precision), c._replicated)
    jitted = jax.jit(
        functools.partial(_forward, config=c.config, dtype=COMPUTE_DTYPES[precision]),
        in_shardings=(c._replicated, c._by_rows, c._by_rows),
        out_shardings=c._by_rows,
    )
    return params, jitted


def _calibrate_on_cpu(
    classifier: Classifier, candidates: Sequence[str] | None, measure: Measure, calibration_cache_dir: str | None
) -> tuple[str, tuple[Params, Callable] | None]:
    """``auto`` on a CPU: the stored or measured pick on the probe batch.

    Sets the classifier's :attr:`~Classifier.calibration` and :attr:`~Classifier.precision_source`.

    Returns:
      ``(precision, (params, jitted))``, the built path None when float32 is the only candidate.
    """
    flags = cpu_flags()
    candidates = tuple(candidates or cpu_candidates(flags))
    if candidates == ("float32",):
        return "float32", None
    c = classifier
    ids, mask = probe_batch(c.tokenizer.encode, c.grid, c.pad_id)
    key = CalibrationKey(machine_kind(c.devices[0], flags), f"{c.name}@{c.weights_hash}", ids.shape, candidates)
    store = CalibrationStore(calibration_cache_dir) if calibration_cache_dir else None
    built: dict[str, tuple[Params, Callable]] = {}

    def measure_now() -> Calibration:
        built.update((name, _build(c, name)) for name in dict.fromkeys(("float32", *candidates)))
        return calibrate({name: functools.partial(c._run, *built[name], ids, mask) for name in built}, measure=measure)

    c.calibration, c.precision_source = stored_or_measured(key, store, measure_now)
    log.info("%s: %s %s", c.name, c.precision_source, c.calibration.describe())
    precision = c.calibration.precision
    # The probe shape stays out of the shapes the planner prefers: kept there, it held 64-text calls to
    # its shape for good (14% padding instead of 7%; benchmarks/README.md, issue 45).  A load that reuses
    # a stored choice then starts from the same (empty) set as a measuring one, so both label alike.
    return precision, built.get(precision) or _build(c, precision)


def params_hash(params: Params) -> str:
    """Short SHA-256 over parameters, for a model that has no files to hash."""
    digest = hashlib.sha256()
    for path, value in sorted(traverse_util.flatten_dict(params).items()):
        digest.update("/".join(path).encode())
        digest.update(np.ascontiguousarray(value, dtype=np.float32).tobytes())
    return digest.hexdigest()[:HASH_CHARS]


def load_classifier(
    model: str | ModelRef | None = None,
    *,
    labels: Sequence[str] | None = None,
    precision: str = AUTO_PRECISION,
    batch_size: int = 0,
    max_batch_tokens: int = 0,
    max_length: int | None = None,
    calibration_cache_dir: str | None = None,
) -> Classifier:
    """Loads a model's weights onto this process's devices: the one place weights are read for inference.

    Args:
      model: a Hugging Face style checkpoint folder (local or on a Beam filesystem), its
        :class:`~flaxmodel.inference.reference.ModelRef`, or None for the default model.
      labels: names the classes when the folder holds only a base encoder (a fresh head
        is initialised, with a warning).
      precision: the matrix multiplies' (float32, bfloat16, int8) or ``"auto"``: bfloat16 on
        TPUs and bfloat16-capable GPUs, float32 on other GPUs, and on CPUs the fastest path
        within its quality bound, measured at load (:mod:`flaxmodel.inference.calibration`).
      batch_size, max_batch_tokens: the grid's rows and token cap (0: automatic for the platform).
      max_length: caps the tokens per text (default: what the model's position table allows;
        ignored for a ref, which carries its own).
      calibration_cache_dir: where ``auto`` stores what it measured on a CPU and reuses it from
        (local or on a Beam filesystem; None: measure at every load).

    Returns:
      The :class:`Classifier`.
    """
    ref = resolve_model(model, max_length=max_length, labels=labels)
    checkpoint = load_checkpoint(ref.path, labels=ref.head_labels)
    return Classifier(
        ref.config,
        checkpoint.params,
        ref.tokenizer(),
        name=ref.name,
        weights_hash=ref.weights_hash,
        precision=precision,
        batch_size=batch_size,
        max_batch_tokens=max_batch_tokens,
        calibration_cache_dir=calibration_cache_dir,
    )
