"""MNIST and Fashion-MNIST from IDX files, plain or gzip-compressed.

An IDX file starts with a four-byte magic number: two zero bytes, a type code
(``0x08`` unsigned byte, ``0x09`` signed byte, ``0x0B`` short, ``0x0C`` int,
``0x0D`` float, ``0x0E`` double) and the number of dimensions. Then come one
big-endian 32-bit size per dimension and the data, big-endian, in row-major
order. MNIST ships four such files per data set; Fashion-MNIST uses the same
names and format, so :func:`load_mnist` reads it as well (:func:`load_fashion_mnist`
only changes the wording of its error messages).

References
----------
Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits",
http://yann.lecun.com/exdb/mnist/ (1998); Y. LeCun, L. Bottou, Y. Bengio and P. Haffner,
"Gradient-based learning applied to document recognition", Proc. IEEE 86(11), 1998.
H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a novel image dataset for benchmarking
machine learning algorithms", arXiv:1708.07747 (2017).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetError

__all__ = ["find_idx_files", "read_idx", "load_mnist", "load_fashion_mnist", "read_file_bytes", "IDX_DTYPES"]

#: IDX type code -> big-endian numpy dtype of the data.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_SPLITS = {"train": "train", "test": "t10k"}
_IMAGE_SIZE = (28, 28)
_N_CLASSES = 10

_MNIST_SOURCE = "download the four IDX files from the MNIST database (yann.lecun.com/exdb/mnist or a mirror)"
_FASHION_SOURCE = "download the four IDX files of Fashion-MNIST (github.com/zalandoresearch/fashion-mnist)"


def _full(path: str | os.PathLike) -> Path:
    """The absolute path, as named in error messages."""
    return Path(path).expanduser().absolute()


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """All bytes of a file, decompressed when it starts with the gzip magic bytes.

    Parameters
    ----------
    path : the file; gzip is recognised by its content, whatever the suffix

    Raises
    ------
    DatasetError : the file cannot be read or is a damaged gzip stream
    """
    full = _full(path)
    try:
        raw = full.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{full}: cannot read the file: {exc.strerror or exc}") from exc
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{full}: damaged gzip file (starts with the gzip magic bytes 1f 8b): {exc}") from exc


def _parse_idx_header(data: bytes, full: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """The data type, the shape and the header length of IDX file contents."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        found = data[:4].hex(" ") or "an empty file"
        raise DatasetError(f"{full}: not an IDX file: expected the magic bytes 00 00 <type> <ndim>, found {found}")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DatasetError(f"{full}: unknown IDX type code 0x{code:02X} in the magic number; expected one of {known}")
    if ndim == 0:
        raise DatasetError(f"{full}: IDX magic number gives 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(
            f"{full}: truncated IDX header: expected {header} bytes for {ndim} dimension sizes, found {len(data)} bytes"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code], shape, header


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian numpy array.

    Parameters
    ----------
    path : the IDX file; gzip compression is detected from the magic bytes ``1f 8b``

    Returns
    -------
    numpy.ndarray : writable, C-contiguous, of the shape and type the header gives

    Raises
    ------
    DatasetError : unreadable file, bad magic number, unknown type code, truncated header,
        or a data payload whose length differs from the one the sizes give

    References
    ----------
    Y. LeCun et al., "The MNIST database of handwritten digits" (file format section),
    http://yann.lecun.com/exdb/mnist/
    """
    full = _full(path)
    data = read_file_bytes(full)
    dtype, shape, header = _parse_idx_header(data, full)
    expected = math.prod(shape) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else f"{actual - expected} bytes too many"
        dims = "x".join(str(s) for s in shape)
        raise DatasetError(
            f"{full}: IDX data of shape {dims} ({dtype.name}) needs {expected} bytes after the {header}-byte header, "
            f"found {actual} ({what})"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _candidates(prefix: str, kind: str) -> list[str]:
    """File names accepted for one IDX file, e.g. ``train-images-idx3-ubyte`` and its variants."""
    base = kind.replace("-idx", ".idx", 1)  # the 'train-images.idx3-ubyte' spelling
    names = []
    for stem in (f"{prefix}-{kind}", f"{prefix}-{base}"):
        names += [stem, stem + ".gz"]
    return names


def _find(directory: Path, prefix: str, kind: str) -> Path | None:
    """The first existing file among the accepted names, or None."""
    for name in _candidates(prefix, kind):
        path = directory / name
        if path.is_file():
            return path
    return None


def _check_directory(data_dir: str | os.PathLike, name: str, source: str) -> Path:
    directory = _full(data_dir)
    if not directory.is_dir():
        raise DatasetError(
            f"{name}: data_dir {directory} does not exist or is not a directory; {source} and set problem.data_dir"
        )
    return directory


def _check_split(split: str, name: str) -> str:
    if split not in _SPLITS:
        raise DatasetError(f"{name}: unknown split {split!r}; expected 'train' or 'test'")
    return _SPLITS[split]


def _locate_pair(directory: Path, prefix: str, name: str, source: str) -> tuple[Path, Path]:
    """The image and label files of a split, or an error naming every missing one."""
    found = {kind: _find(directory, prefix, kind) for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")}
    missing = [f"{directory / f'{prefix}-{kind}'}(.gz)" for kind, path in found.items() if path is None]
    if missing:
        raise DatasetError(
            f"{name}: missing {' and '.join(missing)} under data_dir {directory}; {source} and set problem.data_dir"
        )
    return found["images-idx3-ubyte"], found["labels-idx1-ubyte"]


def _check_images(images: np.ndarray, path: Path) -> None:
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DatasetError(
            f"{path}: expected unsigned-byte images of 3 dimensions (N, 28, 28), "
            f"found {images.dtype.name} data of {images.ndim} dimensions"
        )
    if images.shape[1:] != _IMAGE_SIZE:
        raise DatasetError(f"{path}: expected 28x28 images, found {images.shape[1]}x{images.shape[2]}")


def _check_labels(labels: np.ndarray, path: Path, n_images: int, image_path: Path) -> None:
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(
            f"{path}: expected unsigned-byte labels of 1 dimension (N,), "
            f"found {labels.dtype.name} data of {labels.ndim} dimensions"
        )
    if labels.shape[0] != n_images:
        raise DatasetError(f"{path}: {labels.shape[0]} labels, but {image_path} holds {n_images} images")
    bad = np.flatnonzero(labels >= _N_CLASSES)
    if bad.size:
        raise DatasetError(
            f"{path}: label {int(labels[bad[0]])} at position {int(bad[0])} is out of range; "
            f"expected 0..{_N_CLASSES - 1}"
        )


def find_idx_files(data_dir: str | os.PathLike, split: str, fashion: bool = False) -> tuple[Path, Path]:
    """The image and label files of a split of MNIST (or Fashion-MNIST), without reading them.

    Raises :class:`DatasetError` naming every missing file and where to get it.
    """
    name, source = ("Fashion-MNIST", _FASHION_SOURCE) if fashion else ("MNIST", _MNIST_SOURCE)
    return _locate_pair(_check_directory(data_dir, name, source), _check_split(split, name), name, source)


def _load_pair(data_dir: str | os.PathLike, split: str, name: str, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = _check_split(split, name)
    directory = _check_directory(data_dir, name, source)
    image_path, label_path = _locate_pair(directory, prefix, name, source)
    images = read_idx(image_path)
    _check_images(images, image_path)
    labels = read_idx(label_path)
    _check_labels(labels, label_path, images.shape[0], image_path)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def load_mnist(data_dir: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the MNIST (or Fashion-MNIST) training or test set from its IDX files.

    Looks in ``data_dir`` for ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``
    (split ``"train"``) or ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``
    (split ``"test"``), each plain or with ``.gz``, also spelled with a dot as in
    ``train-images.idx3-ubyte``. Fashion-MNIST ships the same file names and format,
    so a directory holding it loads the same way.

    Parameters
    ----------
    data_dir : directory holding the IDX files
    split : ``"train"`` or ``"test"``

    Returns
    -------
    images : torch.uint8 tensor of shape (N, 28, 28)
    labels : torch.int64 tensor of shape (N,), values in 0..9

    Raises
    ------
    DatasetError : missing files (naming the expected names and where to get them), malformed
        IDX files, images that are not 28x28, different N in the two files, labels outside 0..9

    References
    ----------
    Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits",
    http://yann.lecun.com/exdb/mnist/ (1998).
    """
    return _load_pair(data_dir, split, "MNIST", _MNIST_SOURCE)


def load_fashion_mnist(data_dir: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load Fashion-MNIST; the same as :func:`load_mnist`, with Fashion-MNIST in the error messages.

    References
    ----------
    H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a novel image dataset for benchmarking
    machine learning algorithms", arXiv:1708.07747 (2017).
    """
    return _load_pair(data_dir, split, "Fashion-MNIST", _FASHION_SOURCE)
