"""Dataset readers: exact round trips of tiny files in every format, one-line errors naming the file for
every malformed case, seeded synthetic generators, and scikit-learn's bundled data sets."""

from __future__ import annotations

import ast
import gzip
import os
import pickle
import struct
import sys

import numpy as np
import pytest
import torch

from ddnn.datasets import (
    DatasetError,
    binary_logistic,
    gaussian_blobs,
    load_breast_cancer,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_libsvm,
    load_mnist,
    read_cifar_batch,
    read_idx,
    spirals,
    synthetic_images,
)
from ddnn.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raises_one_line(match_parts, fn, *args, **kwargs) -> str:
    """Call fn, expect a DatasetError whose message is one line containing every part; return the message."""
    with pytest.raises(DatasetError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    for part in match_parts:
        assert str(part) in message, (part, message)
    return message


# ---------------------------------------------------------------------------------------------- IDX / MNIST

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of an array, written out by hand: magic, big-endian sizes, big-endian data."""
    code = IDX_CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">i", s) for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array: np.ndarray, gz: bool = False) -> str:
    data = idx_bytes(array)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(data) if gz else data)
    return str(path)


@pytest.mark.parametrize("dtype", list(IDX_CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_every_type(tmp_path, dtype, gz):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    out = read_idx(write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array, gz))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (3, 4, 5) and out.flags.writeable and out.flags.c_contiguous
    assert np.array_equal(out, array)


def test_read_idx_detects_gzip_by_content_not_suffix(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "no-suffix", array, gz=True)), array)
    assert np.array_equal(read_idx(write_idx(tmp_path / "plain.gz", array, gz=False)), array)


def test_read_idx_one_dimensional(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "labels", labels)), labels)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_payload(tmp_path, gz):
    data = idx_bytes(np.zeros((2, 3, 4), dtype=np.int16))[:-1]
    path = tmp_path / "short"
    path.write_bytes(gzip.compress(data) if gz else data)
    raises_one_line([path, "truncated", "48 bytes", "found 47"], read_idx, path)


def test_read_idx_oversized_payload(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros((2, 3), dtype=np.uint8)) + b"\x00\x00")
    raises_one_line([path, "needs 6 bytes", "found 8", "2 bytes too many"], read_idx, path)


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", ["not an IDX file", "01 00 08 01"]),
        (b"", ["not an IDX file", "empty file"]),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", ["unknown IDX type code 0x07"]),
        (b"\x00\x00\x08\x00", ["0 dimensions"]),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", ["truncated IDX header", "16 bytes"]),
        (b"\x1f\x8b\x08\x00garbage", ["damaged gzip"]),
    ],
)
def test_read_idx_bad_headers(tmp_path, data, words):
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    raises_one_line([path, *words], read_idx, path)


def test_read_idx_missing_file(tmp_path):
    raises_one_line([tmp_path / "nope", "cannot read"], read_idx, tmp_path / "nope")


def mnist_files(directory, n_train=5, n_test=3, gz=False, dotted=False, seed=0):
    """Write the four MNIST files; return the arrays written."""
    rng = np.random.default_rng(seed)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        sep = "." if dotted else "-"
        suffix = ".gz" if gz else ""
        write_idx(directory / f"{prefix}-images{sep}idx3-ubyte{suffix}", images, gz)
        write_idx(directory / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels, gz)
        written[prefix] = (images, labels)
    return written


@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (False, True), (True, True)])
def test_load_mnist_round_trip(tmp_path, gz, dotted):
    written = mnist_files(tmp_path, gz=gz, dotted=dotted)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = load_mnist(tmp_path, split)
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert images.shape == (len(written[prefix][1]), 28, 28)
        assert np.array_equal(images.numpy(), written[prefix][0])
        assert np.array_equal(labels.numpy(), written[prefix][1].astype(np.int64))


def test_load_fashion_mnist_reads_the_same_files(tmp_path):
    written = mnist_files(tmp_path, gz=True)
    images, labels = load_fashion_mnist(str(tmp_path), "test")
    assert np.array_equal(images.numpy(), written["t10k"][0])
    assert np.array_equal(labels.numpy(), written["t10k"][1])


def test_load_mnist_missing_files_names_them_and_the_source(tmp_path):
    message = raises_one_line(
        [
            tmp_path / "train-images-idx3-ubyte(.gz)",
            tmp_path / "train-labels-idx1-ubyte(.gz)",
            f"under data_dir {tmp_path}",
            "yann.lecun.com/exdb/mnist",
            "problem.data_dir",
        ],
        load_mnist,
        tmp_path,
        "train",
    )
    assert message.startswith("MNIST: missing")
    raises_one_line(["Fashion-MNIST", "zalandoresearch"], load_fashion_mnist, tmp_path, "test")


def test_load_mnist_missing_only_labels(tmp_path):
    mnist_files(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    message = raises_one_line([tmp_path / "t10k-labels-idx1-ubyte(.gz)"], load_mnist, tmp_path, "test")
    assert "t10k-images" not in message


def test_load_mnist_bad_directory_and_split(tmp_path):
    raises_one_line([tmp_path / "absent", "does not exist"], load_mnist, tmp_path / "absent", "train")
    raises_one_line(["'validation'", "'train' or 'test'"], load_mnist, tmp_path, "validation")


def test_load_mnist_mismatched_counts(tmp_path):
    mnist_files(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    raises_one_line(
        [tmp_path / "train-labels-idx1-ubyte", "4 labels", tmp_path / "train-images-idx3-ubyte", "5 images"],
        load_mnist,
        tmp_path,
        "train",
    )


def test_load_mnist_label_out_of_range(tmp_path):
    mnist_files(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 10, 2, 3], dtype=np.uint8))
    raises_one_line(
        [tmp_path / "train-labels-idx1-ubyte", "label 10 at position 2", "0..9"], load_mnist, tmp_path, "train"
    )


def test_load_mnist_wrong_image_size_and_type(tmp_path):
    mnist_files(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((5, 27, 28), dtype=np.uint8))
    raises_one_line([path, "28x28", "27x28"], load_mnist, tmp_path, "train")
    write_idx(path, np.zeros((5, 28, 28), dtype=np.float32))
    raises_one_line([path, "unsigned-byte", "float32"], load_mnist, tmp_path, "train")


def test_load_mnist_truncated_file_is_named(tmp_path):
    mnist_files(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    raises_one_line([path, "truncated"], load_mnist, tmp_path, "test")


def test_dataset_error_is_a_one_line_input_error():
    error = DatasetError("first line\nsecond line\r\n  third")
    assert isinstance(error, InputError) and error.exit_code == 2
    assert str(error) == "first line second line third"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


# ---------------------------------------------------------------------------------------------- CIFAR-10


def cifar_batch(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, size=n)]


def write_pickle(path, obj, protocol: int = 4) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def py2_batch_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A pickle as python 2 and numpy 1.x wrote the original CIFAR-10 batches (protocol 2, str as BINSTRING)."""

    def string(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b

    def integer(i: int) -> bytes:
        return b"K" + bytes([i]) if i < 256 else b"J" + struct.pack("<i", i)

    dtype = b"cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R(K\x03" + string(b"|")
    dtype += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + string(b"b") + b"\x87R("
    array += b"K\x01" + integer(data.shape[0]) + integer(data.shape[1]) + b"\x86" + dtype
    array += b"\x89" + string(data.tobytes()) + b"tb"
    items = string(b"data") + array + string(b"labels") + b"](" + b"".join(integer(v) for v in labels) + b"e"
    items += string(b"batch_label") + string(b"training batch 1 of 5")
    return b"\x80\x02}(" + items + b"u."


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_cifar_batch_round_trip(tmp_path, protocol):
    data, labels = cifar_batch(4, seed=protocol)
    write_pickle(tmp_path / "data_batch_1", {b"batch_label": b"x", b"data": data, b"labels": labels}, protocol)
    images, out_labels = read_cifar_batch(tmp_path / "data_batch_1")
    assert images.dtype == np.uint8 and images.shape == (4, 3, 32, 32)
    assert np.array_equal(images[2, 0].ravel(), data[2, :1024])  # red first
    assert np.array_equal(images[2, 2].ravel(), data[2, 2048:])  # blue last
    assert np.array_equal(images.reshape(4, -1), data)
    assert out_labels.dtype == np.int64 and out_labels.tolist() == labels


def test_read_cifar_batch_python2_pickle(tmp_path):
    data, labels = cifar_batch(3, seed=7)
    path = tmp_path / "test_batch"
    path.write_bytes(py2_batch_pickle(data, labels))
    images, out_labels = read_cifar_batch(path)
    assert np.array_equal(images.reshape(3, -1), data) and out_labels.tolist() == labels


def test_load_cifar10_train_and_test(tmp_path):
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    batches = [cifar_batch(2, seed=i) for i in range(1, 6)]
    for i, (data, labels) in enumerate(batches, start=1):
        write_pickle(sub / f"data_batch_{i}", {b"data": data, b"labels": labels})
    test_data, test_labels = cifar_batch(3, seed=9)
    (tmp_path / "test_batch").write_bytes(py2_batch_pickle(test_data, test_labels))  # directly under data_dir

    images, labels = load_cifar10(tmp_path, "train")
    assert images.dtype == torch.uint8 and images.shape == (10, 3, 32, 32)
    assert labels.dtype == torch.int64 and labels.tolist() == sum((b[1] for b in batches), [])
    assert np.array_equal(images.reshape(10, -1).numpy(), np.concatenate([b[0] for b in batches]))

    images, labels = load_cifar10(str(tmp_path), "test")
    assert np.array_equal(images.reshape(3, -1).numpy(), test_data) and labels.tolist() == test_labels


def test_load_cifar10_missing_files_named(tmp_path):
    write_pickle(tmp_path / "data_batch_1", {b"data": cifar_batch(1, 0)[0], b"labels": [0]})
    message = raises_one_line(
        ["CIFAR-10: missing", "data_batch_2", "data_batch_5", str(tmp_path), "cifar-10-python.tar.gz", "data_dir"],
        load_cifar10,
        tmp_path,
        "train",
    )
    assert "data_batch_1" not in message
    raises_one_line([tmp_path / "absent", "does not exist"], load_cifar10, tmp_path / "absent", "test")
    raises_one_line(["'val'", "'train' or 'test'"], load_cifar10, tmp_path, "val")


class Exploit:
    """Unpickling this would create a directory: the restricted unpickler must refuse it."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar_refuses_foreign_globals_without_running_them(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "test_batch"
    write_pickle(path, {b"data": Exploit(str(target)), b"labels": [0]}, protocol=2)
    raises_one_line([path, "refusing to unpickle", "mkdir"], load_cifar10, tmp_path, "test")
    assert not target.exists()


def test_cifar_refuses_other_codecs(tmp_path):
    # protocol-2 bytes go through _codecs.encode with latin1; any other codec is refused
    raw = pickle.dumps({b"data": b"abc"}, protocol=2).replace(b"latin1", b"rot_13")
    path = tmp_path / "test_batch"
    path.write_bytes(raw)
    raises_one_line([path, "not a readable pickle", "rot_13"], read_cifar_batch, path)


@pytest.mark.parametrize(
    "batch, words",
    [
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, ["uint8 array of shape (N, 3072)", "float32"]),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, ["(2, 100)"]),
        ({b"data": [1, 2], b"labels": [0, 1]}, ["found list"]),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, ["label 10 at position 1", "0..9"]),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, ["label -1 at position 1"]),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, ["should hold 2 ints"]),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"a", b"b"]}, ["should hold 2 ints"]),
        ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}, ["without a b'labels'", "CIFAR-100"]),
        ({b"labels": [0, 1]}, ["without a b'data'"]),
        ([1, 2, 3], ["expected a pickled dict", "found list"]),
    ],
)
def test_cifar_bad_batches_name_the_file(tmp_path, batch, words):
    path = tmp_path / "test_batch"
    write_pickle(path, batch)
    raises_one_line([path, *words], load_cifar10, tmp_path, "test")


def test_cifar_damaged_pickle(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:-200])
    raises_one_line([path, "not a readable pickle"], read_cifar_batch, path)


def test_cifar_str_keys_accepted(tmp_path):
    data, labels = cifar_batch(2, seed=3)
    write_pickle(tmp_path / "test_batch", {"data": data, "labels": np.array(labels, dtype=np.int64)})
    images, out = load_cifar10(tmp_path, "test")
    assert np.array_equal(images.reshape(2, -1).numpy(), data) and out.tolist() == labels


# ---------------------------------------------------------------------------------------------- LIBSVM

LIBSVM_TEXT = """# a comment line
+1 1:0.5 3:-2 # trailing comment

-1 2:1e-3\t4:7
+1
-1   1:1.25  4:-0.5   \r
"""
LIBSVM_X = np.array([[0.5, 0, -2, 0], [0, 1e-3, 0, 7], [0, 0, 0, 0], [1.25, 0, 0, -0.5]])


def test_libsvm_round_trip_plus_minus_one(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(LIBSVM_TEXT)
    X, y = load_libsvm(path)
    assert X.dtype == torch.float64 and y.dtype == torch.float64
    assert np.array_equal(X.numpy(), LIBSVM_X)
    assert y.tolist() == [1.0, -1.0, 1.0, -1.0]


def test_libsvm_n_features_pads_columns_and_gzip_by_magic(tmp_path):
    path = tmp_path / "a.bin"  # no .gz suffix: recognised by content
    path.write_bytes(gzip.compress(LIBSVM_TEXT.encode()))
    X, y = load_libsvm(path, n_features=6)
    assert X.shape == (4, 6) and np.array_equal(X.numpy()[:, :4], LIBSVM_X) and not X[:, 4:].any()


@pytest.mark.parametrize("labels, expected", [("01", [1, -1, 1, -1]), ("12", [1, -1, 1, -1]), ("24", [1, -1, 1, -1])])
def test_libsvm_label_conventions(tmp_path, labels, expected):
    negative, positive = labels
    text = LIBSVM_TEXT.replace("+1", positive).replace("-1", negative)
    path = tmp_path / "a.txt"
    path.write_text(text)
    X, y = load_libsvm(path)
    assert y.tolist() == expected and np.array_equal(X.numpy(), LIBSVM_X)


@pytest.mark.parametrize("label, expected", [("1", 1.0), ("+1", 1.0), ("-1", -1.0), ("0", -1.0)])
def test_libsvm_single_label(tmp_path, label, expected):
    path = tmp_path / "a.txt"
    path.write_text(f"{label} 1:1\n{label} 2:1\n")
    assert load_libsvm(path)[1].tolist() == [expected, expected]


def test_libsvm_single_ambiguous_label(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("2 1:1\n2 2:1\n")
    raises_one_line([path, "every example has label 2"], load_libsvm, path)


def test_libsvm_three_labels_names_the_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("1 1:1\n# comment\n\n-1 1:2\n1 2:3\n3 1:1\n1 1:1\n")
    raises_one_line([path, "line 6", "label 3 is a third class after 1 and -1"], load_libsvm, path)


@pytest.mark.parametrize(
    "line, token",
    [
        ("1 1:abc", "1:abc"),
        ("1 0:1", "0:1"),
        ("1 3:1 2:1", "2:1"),
        ("1 3:1 3:2", "3:2"),
        ("1 1:1 x", "x"),
        ("1 1:", "1:"),
        ("1 :1", ":1"),
        ("1 1:2:3", "1:2:3"),
        ("1 1::2", "1::2"),
        ("1 1:-2 2:+-3", "2:+-3"),
        ("1 1:2:3 5", "1:2:3"),
        ("1 1:nan", "1:nan"),
        ("1 1:inf", "1:inf"),
        ("1 1:1_0", "1:1_0"),
        ("1 qid:3 1:1", "qid:3"),
        ("1 -2:1", "-2:1"),
        ("1 1.5:1", "1.5:1"),
        ("1 1:1 9:1", "9:1"),  # above n_features = 5
        ("abc 1:1", "abc"),
        ("0.5 1:1", "0.5"),
        ("1:1 2:1", "1:1"),  # no label
        ("1 1:0x10", "1:0x10"),
    ],
)
def test_libsvm_bad_token_names_file_line_and_token(tmp_path, line, token):
    path = tmp_path / "bad.txt"
    path.write_text(f"1 1:1\n# comment\n{line}\n-1 2:1\n")
    raises_one_line([path, "line 3", repr(token)], load_libsvm, path, n_features=5)


@pytest.mark.parametrize("token", ["a:1", "1e1:1", "7.5:2", "+3:1", "4a:1", "99999999999999999999:1", "3000000000:1"])
def test_libsvm_non_decimal_index_without_n_features(tmp_path, token):
    path = tmp_path / "bad.txt"
    path.write_text(f"-1 1:1\n1 {token}\n")
    raises_one_line([path, "line 2", repr(token)], load_libsvm, path)


def test_libsvm_long_token_is_shortened(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1 1:" + "9" * 500 + "x\n")
    message = raises_one_line([path, "line 1", "..."], load_libsvm, path)
    assert len(message) < 300


def test_libsvm_empty_and_undecodable_files(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# nothing here\n\n")
    raises_one_line([path, "no examples"], load_libsvm, path)
    path = tmp_path / "binary.txt"
    path.write_bytes(b"1 1:1\n-1 2:\xff\n")
    raises_one_line([path, "line 2", "not UTF-8"], load_libsvm, path)
    raises_one_line([tmp_path / "absent.txt", "cannot read"], load_libsvm, tmp_path / "absent.txt")
    raises_one_line(["n_features must be a positive integer"], load_libsvm, path, n_features=0)


def reference_parse(lines: list[str], d: int) -> np.ndarray:
    """Straightforward per-token parser for checking the fast path."""
    X = np.zeros((len(lines), d))
    for r, line in enumerate(lines):
        for token in line.split()[1:]:
            i, v = token.split(":")
            X[r, int(i) - 1] = float(v)
    return X


def test_libsvm_fast_path_matches_reference_on_random_lines(tmp_path):
    rng = np.random.default_rng(5)
    lines = []
    for r in range(200):
        idx = np.flatnonzero(rng.random(60) < rng.random()) + 1
        vals = rng.standard_normal(idx.size) * 10.0 ** rng.integers(-5, 5, idx.size)
        spaces = [" " * int(k) for k in rng.integers(1, 4, idx.size)]
        tokens = "".join(f"{s}{i}:{float(v)!r}" for s, i, v in zip(spaces, idx, vals))
        lines.append(f"{(-1) ** r:+d}{tokens}")
    path = tmp_path / "random.txt"
    path.write_text("\n".join(lines))
    X, y = load_libsvm(path, n_features=60)
    assert np.array_equal(X.numpy(), reference_parse(lines, 60))
    assert y.tolist() == [float((-1) ** r) for r in range(200)]


def test_libsvm_wide_file_parses_exactly(tmp_path):
    """A file as wide as gisette (5000 features), fewer rows: every non-zero lands where it belongs.

    (Parsing speed on the full 6000 x 5000 shape is measured by ``tools/bench/bench_multilevel.py``'s
    runs on gisette, not here: no timings in tests.)
    """
    n, d, density = 400, 5000, 0.13
    rng = np.random.default_rng(0)
    index_text = [f"{i}:" for i in range(1, d + 1)]
    value_text = [f"{v:.6g}" for v in np.linspace(-1.0, 1.0, 2001)]
    values = np.array([float(v) for v in value_text])
    nonzeros = 0
    with open(tmp_path / "gisette", "w") as fh:
        for r in range(n):
            cols = np.flatnonzero(rng.random(d) < density)
            codes = rng.integers(0, len(value_text), size=cols.size)
            body = " ".join([index_text[c] + value_text[k] for c, k in zip(cols.tolist(), codes.tolist())])
            fh.write(f"{'+1' if r % 2 else '-1'} {body}\n")
            nonzeros += int(np.count_nonzero(values[codes]))
            if r == 17:
                expected_row = np.zeros(d)
                expected_row[cols] = values[codes]
    X, y = load_libsvm(tmp_path / "gisette", n_features=d)
    assert X.shape == (n, d) and y.shape == (n,) and y[:2].tolist() == [-1.0, 1.0]
    assert np.array_equal(X[17].numpy(), expected_row)
    assert int(torch.count_nonzero(X)) == nonzeros


# ---------------------------------------------------------------------------------------------- synthetic

GENERATORS = {
    "blobs": lambda seed: gaussian_blobs(50, 7, 3, seed),
    "spirals": lambda seed: spirals(50, 3, seed=seed),
    "logistic": lambda seed: binary_logistic(50, 14, seed),
    "images": lambda seed: synthetic_images(20, 3, 16, 12, 4, seed),
}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_synthetic_same_seed_same_data_different_seed_different_data(name):
    make = GENERATORS[name]
    X1, y1 = make(3)
    X2, y2 = make(3)
    X3, _ = make(4)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    assert not torch.equal(X1, X3)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_synthetic_does_not_touch_global_random_state(name):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    GENERATORS[name](0)
    assert torch.equal(torch.rand(3), expected)
    with open(os.path.join(REPO, "ddnn", "datasets", "synthetic.py")) as fh:
        assert "np.random" not in fh.read()  # and no numpy generator at all


def test_gaussian_blobs_shapes_and_classes():
    X, y = gaussian_blobs(101, 5, 4, seed=0, separation=8.0)
    assert X.shape == (101, 5) and X.dtype == torch.float64 and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [26, 25, 25, 25]
    means = torch.stack([X[y == k].mean(0) for k in range(4)])
    nearest = torch.cdist(X, means).argmin(1)
    assert (nearest == y).double().mean() > 0.9


def test_spirals_shapes_and_arms():
    X, y = spirals(300, seed=2, noise=0.0)
    assert X.shape == (300, 2) and X.dtype == torch.float64 and y.dtype == torch.int64
    assert set(y.tolist()) == {0, 1} and torch.bincount(y).tolist() == [150, 150]
    radius = X.norm(dim=1)
    angle = torch.atan2(X[:, 1], X[:, 0])
    arm = torch.remainder(angle - radius - torch.pi * y.double(), 2 * torch.pi)  # 0 (mod 2 pi) on the arm of class y
    assert torch.allclose(torch.minimum(arm, 2 * torch.pi - arm), torch.zeros(300, dtype=torch.float64), atol=1e-9)


def test_binary_logistic_shapes_labels_and_separability():
    X, y = binary_logistic(690, 14, seed=1)
    assert X.shape == (690, 14) and X.dtype == torch.float64 and y.dtype == torch.float64
    assert set(y.tolist()) == {-1.0, 1.0}
    X, y = binary_logistic(400, 5, seed=1, noise=0.0)
    w = torch.linalg.lstsq(X, y).solution  # separable data: least squares already classifies most points
    assert (torch.sign(X @ w) == y).double().mean() > 0.9


def test_synthetic_images_are_learnable():
    images, labels = synthetic_images(200, 1, 16, 16, 4, seed=0)
    assert images.shape == (200, 1, 16, 16) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert labels.min() >= 0 and labels.max() == 3 and images.float().std() > 10
    flat = images.reshape(200, -1).double()
    train, test = slice(0, 150), slice(150, 200)
    means = torch.stack([flat[train][labels[train] == k].mean(0) for k in range(4)])
    accuracy = (torch.cdist(flat[test], means).argmin(1) == labels[test]).double().mean()
    assert accuracy > 0.5  # chance is 0.25


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: gaussian_blobs(0, 2, 2, seed=0), ["n must be an integer of at least 1", "0"]),
        (lambda: gaussian_blobs(10, 2, 2, seed=1.5), ["seed must be an integer"]),
        (lambda: spirals(10, noise=-1.0), ["noise must be a finite number >= 0"]),
        (lambda: binary_logistic(10, 0, seed=0), ["n_features"]),
        (lambda: synthetic_images(10, 1, 8, 8, True, seed=0), ["n_classes"]),
    ],
)
def test_synthetic_bad_arguments(call, words):
    raises_one_line(words, call)


# ---------------------------------------------------------------------------------------------- bundled


def test_bundled_digits_and_breast_cancer():
    pytest.importorskip("sklearn")
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float64
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels.dtype == torch.int64 and labels.shape == (1797,) and set(labels.tolist()) == set(range(10))
    X, y = load_breast_cancer()
    assert X.shape == (569, 30) and X.dtype == torch.float64 and y.dtype == torch.float64
    assert set(y.tolist()) == {-1.0, 1.0} and (y == 1).sum() == 357  # 357 benign, 212 malignant


@pytest.mark.parametrize("load, name", [(load_digits, "digits"), (load_breast_cancer, "breast_cancer")])
def test_bundled_without_sklearn_says_how_to_install(monkeypatch, load, name):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    message = raises_one_line([f"scikit-learn is needed for dataset '{name}'", "pip install 'ddnn[data]'"], load)
    assert message == f"scikit-learn is needed for dataset '{name}': pip install 'ddnn[data]'"


# ---------------------------------------------------------------------------------------------- isolation


def test_datasets_import_nothing_of_ddnn_but_errors():
    package = os.path.join(REPO, "ddnn", "datasets")
    for name in sorted(os.listdir(package)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(package, name)) as fh:
            tree = ast.parse(fh.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [("." * node.level) + (node.module or "")]
            else:
                continue
            for module in modules:
                assert module == "ddnn.errors" or not module.startswith("ddnn"), (name, module)
                assert not module.startswith(".."), (name, module)
                # scikit-learn is optional: imported inside functions only, never at module level
                assert node not in tree.body or not module.startswith("sklearn"), (name, module)
