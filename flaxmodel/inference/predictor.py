"""Jitted inference over the model's shape grid, and ``load_classifier``.

A :class:`Classifier` pads every batch to a shape of its
:class:`~flaxmodel.inference.shapes.ShapeGrid`, so it compiles at most once per
bucket however many texts it sees; ``predict_ids`` sorts texts by length and
runs them in the cuts the grid's planner finds cheapest.  The softmax (or
sigmoid) is fused into the jitted function, and the same :class:`Classifier` is
safe to share between threads.  It runs data parallel over every local device
(all chips of a TPU host, all GPUs of a VM; XLA's host platform on CPU, one
device unless ``--xla_force_host_platform_device_count`` says otherwise):
parameters are replicated once, each batch's rows are split over a one-axis
mesh, and a batch whose rows do not divide by the device count gets empty
rows, so any grid shape runs on any host.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flaxmodel.ckpts.default_model import default_model_path
from flaxmodel.ckpts.loader import load_checkpoint
from flaxmodel.core.config import EncoderConfig
from flaxmodel.core.model import Params, apply, probabilities
from flaxmodel.errors import ConfigError
from flaxmodel.inference.shapes import ShapeGrid, pad_batch, predict_in_batches
from flaxmodel.inference.tokenizer import TextEncoder

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# "auto" picks per device when the model loads (a launcher may run on another platform than its workers).
AUTO_DTYPE = "auto"
# GPUs with bfloat16 tensor cores start at compute capability 8.0 (A100, L4, H100); a T4 (7.5) emulates
# bfloat16 and runs it slower than float32.  bfloat16 probabilities stay within 2e-2 of float32 on the
# architectures the parity tests cover (tests/flaxmodel/core/test_parity.py).
_BFLOAT16_MIN_COMPUTE_CAPABILITY = 8.0


def auto_dtype(device: jax.Device) -> str:
    """The compute dtype ``"auto"`` means on ``device``: bfloat16 on TPUs and bfloat16-capable GPUs, else float32."""
    if device.platform == "tpu":
        return "bfloat16"
    if device.platform == "gpu":
        capability = float(getattr(device, "compute_capability", 0) or 0)
        return "bfloat16" if capability >= _BFLOAT16_MIN_COMPUTE_CAPABILITY else "float32"
    return "float32"


def _forward(params: Params, input_ids: jax.Array, attention_mask: jax.Array, *, config, dtype) -> jax.Array:
    return probabilities(apply(params, input_ids, attention_mask, config=config, dtype=dtype), config)


class Classifier:
    """A loaded text classifier: tokenizer, parameters on device, jitted forward."""

    def __init__(
        self,
        config: EncoderConfig,
        params: Params,
        text_encoder: TextEncoder,
        *,
        name: str = "model",
        dtype: str = AUTO_DTYPE,
        batch_size: int = 64,
        devices: Sequence[jax.Device] | None = None,
    ):
        if dtype not in (AUTO_DTYPE, *DTYPES):
            raise ConfigError(f"dtype must be {AUTO_DTYPE!r} or one of {sorted(DTYPES)}, got {dtype!r}")
        self.devices = tuple(devices or jax.local_devices())
        self.config = config
        self.name = name
        self.dtype = auto_dtype(self.devices[0]) if dtype == AUTO_DTYPE else dtype
        self.batch_size = batch_size
        self.text_encoder = text_encoder
        self.max_length = text_encoder.max_length
        self.grid = ShapeGrid.for_model(config, self.max_length, batch_size)
        self.pad_id = config.pad_token_id
        self.host_params = params
        compute = DTYPES[self.dtype]
        mesh = Mesh(np.array(self.devices), ("rows",))
        replicated, by_rows = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("rows"))
        self.params = jax.device_put(jax.tree_util.tree_map(lambda p: jnp.asarray(p, compute), params), replicated)
        self._jitted = jax.jit(
            functools.partial(_forward, config=config, dtype=compute),
            in_shardings=(replicated, by_rows, by_rows),
            out_shardings=by_rows,
        )
        self._shapes: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    @property
    def num_compiles(self) -> int:
        """Distinct (batch, length) shapes run so far: each one compiled once."""
        return len(self._shapes)

    @functools.cached_property
    def weights_hash(self) -> str:
        """Short SHA-256 over the parameters, to tell which weights labelled a row."""
        digest = hashlib.sha256()
        for path, value in sorted(traverse_util.flatten_dict(self.host_params).items()):
            digest.update("/".join(path).encode())
            digest.update(np.ascontiguousarray(value, dtype=np.float32).tobytes())
        return digest.hexdigest()[:16]

    def pad(self, sequences: Sequence[Sequence[int]], rows: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """:func:`~flaxmodel.inference.shapes.pad_batch` with this model's padding id."""
        return pad_batch(sequences, rows, length, self.pad_id)

    @property
    def platform(self) -> str:
        """The devices' platform: ``cpu``, ``gpu`` or ``tpu``."""
        return self.devices[0].platform

    def predict_padded(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Probabilities ``[rows, num_labels]`` of one grid-shaped ``[rows, length]`` batch."""
        rows = input_ids.shape[0]
        extra = -rows % len(self.devices)
        if extra:
            input_ids = np.pad(input_ids, ((0, extra), (0, 0)), constant_values=self.pad_id)
            attention_mask = np.pad(attention_mask, ((0, extra), (0, 0)))
        shape = tuple(input_ids.shape)
        if shape not in self._shapes:
            with self._lock:
                self._shapes.add(shape)
        return np.asarray(self._jitted(self.params, input_ids, attention_mask))[:rows]

    def predict_ids(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Probabilities ``[n, num_labels]`` for token id sequences, in input order.

        Sequences are sorted by length and run in the grid-shaped batches
        the grid's planner picks for them.
        """
        return predict_in_batches(self.predict_padded, sequences, self.grid, self.pad_id, self.config.num_labels)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities ``[n_texts, n_labels]``; texts past ``max_length`` are truncated."""
        if isinstance(texts, str):
            raise TypeError("predict_proba takes a sequence of texts, not one string")
        if not len(texts):
            return np.zeros((0, self.config.num_labels), dtype=np.float32)
        return self.predict_ids(self.text_encoder.encode(texts))

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable label name of each text."""
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]


def load_classifier(
    path: str | None = None,
    *,
    labels: Sequence[str] | None = None,
    dtype: str = AUTO_DTYPE,
    batch_size: int = 64,
    max_length: int | None = None,
) -> Classifier:
    """Loads a Hugging Face style checkpoint folder (local or on a Beam filesystem).

    ``labels`` names the classes when the folder holds only a base encoder (a
    fresh head is initialised, with a warning).  ``dtype`` ``"auto"`` computes
    in bfloat16 on TPUs and bfloat16-capable GPUs, float32 elsewhere (see
    :func:`auto_dtype`).  ``max_length`` caps the tokens per text (default: what
    the model's position table allows).
    """
    path = str(path) if path is not None else default_model_path()
    checkpoint = load_checkpoint(path, labels=labels)
    config = checkpoint.config
    limit = config.max_length if max_length is None else min(max_length, config.max_length)
    text_encoder = TextEncoder.from_folder(path, limit)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return Classifier(config, checkpoint.params, text_encoder, name=name, dtype=dtype, batch_size=batch_size)
