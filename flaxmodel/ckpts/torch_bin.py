"""Weights-only reader for PyTorch ``pytorch_model.bin`` files, without torch.

A ``.bin`` is a zip holding a pickle (``data.pkl``) that describes tensors and one
raw file per storage.  Unpickling arbitrary data runs arbitrary code, so this
reader's unpickler resolves only the handful of globals a state dict of tensors
needs (the storage types, the tensor-rebuild helpers and ``OrderedDict``) and
refuses everything else, like ``torch.load(weights_only=True)`` does.  Tensors
become numpy arrays; bfloat16 uses ``ml_dtypes``.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
import zlib
from typing import Any

import ml_dtypes
import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(ValueError):
    """The file references something other than tensors; it was not loaded."""


class _StorageType:
    def __init__(self, dtype: np.dtype):
        self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
    size, stride = tuple(size), tuple(stride)
    if not isinstance(storage, np.ndarray) or len(size) != len(stride) or min((offset, *size, *stride)) < 0:
        raise ValueError(f"malformed tensor record (offset {offset}, size {size}, stride {stride})")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    # as_strided does no bounds checking: a truncated storage would read foreign memory.
    last = offset + sum((n - 1) * step for n, step in zip(size, stride))
    if last >= storage.size:
        raise ValueError(
            f"a tensor of shape {size} needs {last + 1} elements of a storage holding {storage.size}; "
            "the file is truncated or corrupt"
        )
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _WeightsUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._root = root
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load {module}.{name}: not a tensor type") from None

    def persistent_load(self, pid: Any) -> np.ndarray:
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"unsupported persistent id {pid!r}")
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._root}/data/{key}")
            except KeyError:
                raise ValueError(f"storage {key} is missing from the archive") from None
            if len(raw) % storage_type.dtype.itemsize:
                raise ValueError(f"storage {key} is not a whole number of {storage_type.dtype} elements")
            self._storages[key] = np.frombuffer(raw, dtype=storage_type.dtype)
        return self._storages[key]


def load_torch_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """Tensors of a zip-format ``torch.save`` file of a state dict, as numpy arrays."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError(
            "not a zip-format PyTorch file (legacy torch.save format is not supported; "
            "re-save the model with safetensors)"
        ) from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError("PyTorch file has no data.pkl")
        root = pickles[0][: -len("/data.pkl")]
        byteorder = f"{root}/byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise ValueError("big-endian PyTorch files are not supported")
        try:
            state = _WeightsUnpickler(archive.read(pickles[0]), archive, root).load()
        except (pickle.UnpicklingError, EOFError, TypeError, IndexError, zipfile.BadZipFile, zlib.error) as err:
            raise ValueError(f"corrupt PyTorch file ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ValueError("PyTorch file does not hold a state dict of tensors")
    return dict(state)
