"""Binary classification data in the LIBSVM / SVMlight text format.

One example per line: ``label index:value index:value ...`` with 1-based,
strictly increasing feature indices; features not listed are zero. Text after
``#`` is a comment and blank lines are skipped. The file may be gzip-compressed
(recognised by its magic bytes). Labels {-1, +1}, {0, 1}, {1, 2} or any other
two distinct integers are mapped to -1 (the smaller) and +1 (the larger).

Each line is split with plain string operations and converted to numpy arrays
in one call per line; a line that fails this fast path is parsed again token by
token, which finds the offending token for the error message.

References
----------
C.-C. Chang and C.-J. Lin, "LIBSVM: a library for support vector machines", ACM Transactions
on Intelligent Systems and Technology 2(3), 27:1-27:27 (2011);
https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/
T. Joachims, "Making large-scale SVM learning practical", in Advances in Kernel Methods, MIT Press (1999).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetError
from .mnist import read_file_bytes

__all__ = ["load_libsvm", "parse_libsvm"]

_MAX_TOKEN = 40  # characters of a bad token quoted in an error message


class _Line:
    """Where a token comes from, for error messages."""

    def __init__(self, path: Path, number: int):
        self.path = path
        self.number = number

    def error(self, token: str, expected: str) -> DatasetError:
        shown = token if len(token) <= _MAX_TOKEN else token[:_MAX_TOKEN] + "..."
        return DatasetError(f"{self.path}, line {self.number}: bad token {shown!r}: expected {expected}")


def _parse_label(token: str, where: _Line) -> float:
    try:
        value = float(token) if "_" not in token else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not value.is_integer():
        raise where.error(token, "an integer class label such as -1, +1, 0, 1 or 2 at the start of the line")
    return value


def _byte_classes() -> np.ndarray:
    """Class of every byte: 0 whitespace (as ``str.split`` sees it), 1 colon, 2 anything else."""
    classes = np.full(256, 2, dtype=np.int8)
    classes[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = 0
    classes[ord(":")] = 1
    return classes


_CLASSES = _byte_classes()
_PATTERN = np.array([2, 1, 2, 0], dtype=np.int8)  # index, colon, value, whitespace
_MAX_DIGITS = 15
_MAX_INDEX = 2**31 - 1


def _index_spans(b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Start and stop of every index in the bytes ``index:value index:value ...``, or None for another shape."""
    cls = _CLASSES[b]
    starts = np.concatenate(([0], np.flatnonzero(cls[1:] != cls[:-1]) + 1))
    stops = np.append(starts[1:], b.size)
    kinds = cls[starts]
    first, last = int(kinds[0] == 0), len(kinds) - int(kinds[-1] == 0)
    starts, stops, kinds = starts[first:last], stops[first:last], kinds[first:last]
    n = (len(kinds) + 1) // 4
    if n == 0 or len(kinds) != 4 * n - 1 or not np.array_equal(kinds, np.tile(_PATTERN, n)[:-1]):
        return None
    if not np.all(stops[1::4] - starts[1::4] == 1):  # exactly one colon per token
        return None
    lo, hi = starts[0::4], stops[0::4]
    if np.any(hi - lo > _MAX_DIGITS):
        return None
    return lo, hi


def _digits_to_int(b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """The integers written in decimal at ``b[lo:hi]``, all spans at once; None when a byte is not a digit."""
    width = hi - lo
    value = np.zeros(lo.size, dtype=np.int64)
    for k in range(int(width.max())):
        more = k < width
        digit = b[np.minimum(lo + k, b.size - 1)].astype(np.int64) - 48
        if np.any(more & ((digit < 0) | (digit > 9))):
            return None
        value = np.where(more, value * 10 + digit, value)
    return value


def _fast_features(rest: str, n_features: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """0-based indices and values of a well-formed ``index:value ...`` string, or None when anything is off."""
    if "_" in rest or not rest.isascii():
        return None
    b = np.frombuffer(rest.encode("ascii"), dtype=np.uint8)
    spans = _index_spans(b)
    index = None if spans is None else _digits_to_int(b, *spans)
    if index is None:
        return None
    try:
        value = np.fromiter(map(float, rest.replace(":", " ").split()[1::2]), dtype=np.float64, count=index.size)
    except ValueError:
        return None
    limit = _MAX_INDEX if n_features is None else n_features
    if index[0] < 1 or index[-1] > limit or not np.all(np.diff(index) > 0):
        return None
    if not np.all(np.isfinite(value)):
        return None
    return index - 1, value


def _slow_features(tokens: list[str], n_features: int | None, where: _Line) -> tuple[np.ndarray, np.ndarray]:
    """Token-by-token parse that raises on the first malformed token."""
    index, value, previous = [], [], 0
    for token in tokens:
        i, sep, v = token.partition(":")
        if not sep or not (i.isascii() and i.isdigit()):
            raise where.error(token, "index:value with a positive integer index")
        k = int(i)
        if k == 0:
            raise where.error(token, "a feature index of at least 1 (indices are 1-based)")
        if k <= previous:
            raise where.error(token, f"a feature index greater than the previous one ({previous})")
        if n_features is not None and k > n_features:
            raise where.error(token, f"a feature index of at most n_features = {n_features}")
        if k > _MAX_INDEX:
            raise where.error(token, f"a feature index of at most {_MAX_INDEX}")
        try:
            x = float(v) if "_" not in v else math.nan
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            raise where.error(token, "a finite number after the colon")
        index.append(k - 1)
        value.append(x)
        previous = k
    return np.array(index, dtype=np.int64), np.array(value, dtype=np.float64)


def _features(rest: str, n_features: int | None, where: _Line) -> tuple[np.ndarray, np.ndarray]:
    """Indices (0-based) and values of the features after the label."""
    if not rest or rest.isspace():
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    parsed = _fast_features(rest, n_features)
    if parsed is None:
        parsed = _slow_features(rest.split(), n_features, where)
    return parsed


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(f"{path}, line {line}: not UTF-8 or ASCII text (byte {data[exc.start]:#04x})") from exc


def _label_map(first_line: dict[float, int], path: Path) -> dict[float, float]:
    """Map the distinct labels to -1 and +1, or raise naming the line of the first surplus label."""
    distinct = sorted(first_line)
    if len(distinct) > 2:
        first, second, third = sorted(first_line, key=first_line.get)[:3]
        raise DatasetError(
            f"{path}, line {first_line[third]}: label {third:g} is a third class after {first:g} and {second:g}; "
            "expected binary labels such as -1/+1, 0/1 or 1/2"
        )
    if len(distinct) == 2:
        return {distinct[0]: -1.0, distinct[1]: 1.0}
    only = distinct[0]
    if only in (-1.0, 0.0, 1.0):
        return {only: 1.0 if only == 1.0 else -1.0}
    raise DatasetError(
        f"{path}: every example has label {only:g}; cannot tell whether it is the negative or the positive class "
        "(a single label must be -1, 0 or +1)"
    )


def _check_n_features(n_features: int | None, path: Path) -> None:
    if n_features is None:
        return
    integer = isinstance(n_features, int | np.integer) and not isinstance(n_features, bool)
    if not integer or not 1 <= n_features <= _MAX_INDEX:
        raise DatasetError(f"{path}: n_features must be a positive integer of at most {_MAX_INDEX}, got {n_features!r}")


def _dense(n: int, d: int, path: Path) -> np.ndarray:
    try:
        return np.zeros((n, d), dtype=np.float64)
    except MemoryError as exc:
        raise DatasetError(
            f"{path}: a dense {n} x {d} float64 matrix ({8 * n * d / 2**30:.1f} GiB) does not fit in memory; "
            "check the largest feature index or give n_features"
        ) from exc


def parse_libsvm(text: str, path: str | os.PathLike, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse LIBSVM text that was read from ``path`` (named in error messages).

    Parameters
    ----------
    text : the file contents
    path : the file the text came from
    n_features : the number of columns; None takes the largest index in the file

    Returns
    -------
    X : float64 array of shape (N, d)
    y : float64 array of shape (N,), values -1 and +1

    Raises
    ------
    DatasetError : see :func:`load_libsvm`
    """
    full = Path(path)
    _check_n_features(n_features, full)
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    labels: list[float] = []
    first_line: dict[float, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if "#" in line:
            line = line.partition("#")[0]
        head = line.split(None, 1)
        if not head:
            continue
        where = _Line(full, number)
        label = _parse_label(head[0], where)
        first_line.setdefault(label, number)
        labels.append(label)
        rows.append(_features(head[1] if len(head) > 1 else "", n_features, where))
    if not rows:
        raise DatasetError(f"{full}: no examples (only blank or comment lines); expected lines 'label index:value ...'")
    d = n_features if n_features is not None else 1 + max((int(i[-1]) for i, _ in rows if i.size), default=-1)
    X = _dense(len(rows), d, full)
    for r, (index, value) in enumerate(rows):
        X[r, index] = value
    mapping = _label_map(first_line, full)
    y = np.array([mapping[v] for v in labels], dtype=np.float64)
    return X, y


def load_libsvm(path: str | os.PathLike, n_features: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a binary classification data set in LIBSVM / SVMlight format as dense tensors.

    Parameters
    ----------
    path : the text file, plain or gzip-compressed (recognised by the magic bytes ``1f 8b``)
    n_features : the number of features d; None takes the largest index in the file. Give it
        for a test file that may not use the last features of its training file.

    Returns
    -------
    X : torch.float64 tensor of shape (N, d), zero where a feature is not listed
    y : torch.float64 tensor of shape (N,), values -1 and +1 (the smaller of two labels is -1;
        a file with a single label keeps -1 or +1, and 0 becomes -1)

    Raises
    ------
    DatasetError : unreadable file, text that is not UTF-8, a malformed token (non-numeric,
        index 0, non-increasing index, index above ``n_features``), more than two distinct
        labels, or no examples; the message names the file and, for a token, the 1-based line

    References
    ----------
    C.-C. Chang and C.-J. Lin, "LIBSVM: a library for support vector machines", ACM TIST 2(3), 27 (2011).
    """
    full = Path(path).expanduser().absolute()
    _check_n_features(n_features, full)
    X, y = parse_libsvm(_decode(read_file_bytes(full), full), full, n_features)
    return torch.from_numpy(X), torch.from_numpy(y)
