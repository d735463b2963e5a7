"""CIFAR-10, python version: pickled batches read through a restricted unpickler.

The python version of CIFAR-10 (``cifar-10-python.tar.gz``) unpacks to
``cifar-10-batches-py/`` with five training batches ``data_batch_1`` ..
``data_batch_5`` and one ``test_batch``. Each is a pickled dict whose ``b"data"``
is a uint8 array of N x 3072 (one row per image: the 1024 red, then green, then
blue values of a 32 x 32 image, each row-major) and whose ``b"labels"`` is a list
of N ints in 0..9.

Unpickling can run arbitrary code, so the batches are read by an unpickler that
only builds numpy arrays, dtypes and scalars and refuses every other global.

References
----------
A. Krizhevsky, "Learning multiple layers of features from tiny images", technical report,
University of Toronto (2009); https://www.cs.toronto.edu/~kriz/cifar.html
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DatasetError
from .mnist import read_file_bytes

__all__ = ["find_cifar10_files", "load_cifar10", "read_cifar_batch", "RestrictedUnpickler", "CIFAR10_FILES"]

#: Batch file names of each split.
CIFAR10_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}

_SUBDIR = "cifar-10-batches-py"
_N_CLASSES = 10
_SHAPE = (3, 32, 32)
_ROW = 3 * 32 * 32
_SOURCE = (
    "download the python version (cifar-10-python.tar.gz) from www.cs.toronto.edu/~kriz/cifar.html, "
    "unpack it and set problem.data_dir"
)


def _numpy_core(submodule: str) -> Any:
    """``numpy._core.<submodule>`` (numpy >= 2), else ``numpy.core.<submodule>``."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # numpy 1.x without the numpy._core alias
        return importlib.import_module(f"numpy.core.{submodule}")


def _allowed_globals() -> dict[tuple[str, str], Callable[[], Any]]:
    """(module, name) pairs that numpy arrays, dtypes and scalars need, with how to fetch each."""
    allowed: dict[tuple[str, str], Callable[[], Any]] = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: _codecs_encode,  # bytes written with pickle protocol < 3
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = lambda: _numpy_core("multiarray")._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = lambda: _numpy_core("multiarray").scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = lambda: _numpy_core("numeric")._frombuffer  # protocol 5
    return allowed


def _codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` limited to text codecs, as protocol-2 pickles of bytes use it (with latin1)."""
    if not isinstance(obj, str) or encoding.lower().replace("-", "_") not in {"latin1", "latin_1", "utf_8", "utf8"}:
        raise pickle.UnpicklingError(f"refusing _codecs.encode with {type(obj).__name__} and codec {encoding!r}")
    return obj.encode(encoding, errors)


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, dtypes and scalars and refuses every other global.

    Parameters
    ----------
    file : binary stream holding the pickle
    path : the file name, for error messages
    **kwargs : passed to :class:`pickle.Unpickler` (e.g. ``encoding="bytes"``)
    """

    def __init__(self, file: io.BufferedIOBase, path: str | os.PathLike, **kwargs: Any):
        super().__init__(file, **kwargs)
        self.path = Path(path)

    def find_class(self, module: str, name: str) -> Any:
        fetch = _ALLOWED.get((module, name))
        if fetch is None:
            raise DatasetError(
                f"{self.path}: refusing to unpickle {module}.{name}; a CIFAR-10 batch holds only numpy arrays, "
                "lists and bytes (is this the python version of CIFAR-10?)"
            )
        return fetch()


def _unpickle(path: Path) -> Any:
    raw = read_file_bytes(path)
    try:
        return RestrictedUnpickler(io.BytesIO(raw), path, encoding="bytes").load()
    except DatasetError:
        raise
    except Exception as exc:  # a damaged pickle raises any of many exception types
        raise DatasetError(f"{path}: not a readable pickle file: {type(exc).__name__}: {exc}") from exc


def _entry(batch: dict, key: str) -> Any:
    """``batch[b"key"]``, or ``batch["key"]`` for batches pickled with str keys; None when absent."""
    return batch.get(key.encode(), batch.get(key))


def _batch_data(batch: dict, path: Path) -> np.ndarray:
    data = _entry(batch, "data")
    if data is None:
        raise DatasetError(f"{path}: CIFAR-10 batch without a b'data' entry")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
        found = type(data).__name__
        if isinstance(data, np.ndarray):
            found = f"{data.dtype.name} array of shape {data.shape}"
        raise DatasetError(f"{path}: b'data' should be a uint8 array of shape (N, {_ROW}), found {found}")
    return data


def _batch_labels(batch: dict, path: Path, n: int) -> np.ndarray:
    labels = _entry(batch, "labels")
    if labels is None:
        hint = " (b'fine_labels' suggests CIFAR-100, which is not supported)" if _entry(batch, "fine_labels") else ""
        raise DatasetError(f"{path}: CIFAR-10 batch without a b'labels' entry{hint}")
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: b'labels' should be a list of ints: {exc}") from exc
    if array.ndim != 1 or array.shape[0] != n or not np.issubdtype(array.dtype, np.integer):
        raise DatasetError(
            f"{path}: b'labels' should hold {n} ints (one per row of b'data'), "
            f"found {array.dtype.name} values of shape {array.shape}"
        )
    bad = np.flatnonzero((array < 0) | (array >= _N_CLASSES))
    if bad.size:
        raise DatasetError(
            f"{path}: label {int(array[bad[0]])} at position {int(bad[0])} is out of range; "
            f"expected 0..{_N_CLASSES - 1}"
        )
    return array.astype(np.int64)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one CIFAR-10 batch file.

    Parameters
    ----------
    path : a pickled batch such as ``data_batch_1`` or ``test_batch`` (gzip-compressed is accepted)

    Returns
    -------
    images : uint8 array of shape (N, 3, 32, 32), channels R, G, B
    labels : int64 array of shape (N,), values in 0..9

    Raises
    ------
    DatasetError : unreadable or damaged pickle, a global other than numpy's array machinery,
        missing entries, wrong shapes or dtype, labels outside 0..9

    References
    ----------
    A. Krizhevsky, "Learning multiple layers of features from tiny images", University of Toronto (2009).
    """
    full = Path(path).expanduser().absolute()
    batch = _unpickle(full)
    if not isinstance(batch, dict):
        raise DatasetError(f"{full}: expected a pickled dict with b'data' and b'labels', found {type(batch).__name__}")
    data = _batch_data(batch, full)
    labels = _batch_labels(batch, full, data.shape[0])
    return np.ascontiguousarray(data).reshape(-1, *_SHAPE), labels


def _locate(directory: Path, names: tuple[str, ...]) -> list[Path]:
    """The batch files, each directly under ``directory`` or under its ``cifar-10-batches-py``."""
    found, missing = [], []
    for name in names:
        hits = [d / name for d in (directory, directory / _SUBDIR) if (d / name).is_file()]
        if hits:
            found.append(hits[0])
        else:
            missing.append(name)
    if missing:
        raise DatasetError(
            f"CIFAR-10: missing {', '.join(missing)} under data_dir {directory} "
            f"(looked in {directory} and {directory / _SUBDIR}); {_SOURCE}"
        )
    return found


def find_cifar10_files(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """The batch files of a split, without reading them; :class:`DatasetError` naming the missing ones."""
    if split not in CIFAR10_FILES:
        raise DatasetError(f"CIFAR-10: unknown split {split!r}; expected 'train' or 'test'")
    directory = Path(data_dir).expanduser().absolute()
    if not directory.is_dir():
        raise DatasetError(f"CIFAR-10: data_dir {directory} does not exist or is not a directory; {_SOURCE}")
    return _locate(directory, CIFAR10_FILES[split])


def load_cifar10(data_dir: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the CIFAR-10 training (50000 images) or test (10000 images) set, python version.

    Parameters
    ----------
    data_dir : directory holding ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``,
        directly or in a ``cifar-10-batches-py`` subdirectory
    split : ``"train"`` or ``"test"``

    Returns
    -------
    images : torch.uint8 tensor of shape (N, 3, 32, 32), channels R, G, B
    labels : torch.int64 tensor of shape (N,), values in 0..9

    Raises
    ------
    DatasetError : unknown split, missing directory or files (naming them and where to get them),
        or a batch that :func:`read_cifar_batch` rejects

    References
    ----------
    A. Krizhevsky, "Learning multiple layers of features from tiny images", technical report,
    University of Toronto (2009); https://www.cs.toronto.edu/~kriz/cifar.html
    """
    batches = [read_cifar_batch(path) for path in find_cifar10_files(data_dir, split)]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return torch.from_numpy(images), torch.from_numpy(labels)
