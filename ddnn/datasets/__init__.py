"""Readers of real data file formats and seeded synthetic data sets.

Pure functions from files (or seeds) to tensors, independent of the rest of ddnn
except :mod:`ddnn.errors`: every problem with a data file raises
:class:`DatasetError`, an :class:`~ddnn.errors.InputError` reported as one line.

- :mod:`.mnist`: IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed
- :mod:`.cifar`: CIFAR-10, python version, through a restricted unpickler
- :mod:`.libsvm`: LIBSVM / SVMlight text for binary classification
- :mod:`.synthetic`: Gaussian blobs, spirals, logistic-model data, class-patterned images
- :mod:`.bundled`: scikit-learn's bundled digits and breast cancer data (optional extra)
"""

from __future__ import annotations

from .bundled import load_breast_cancer, load_digits
from .cifar import find_cifar10_files, load_cifar10, read_cifar_batch
from .errors import DatasetError
from .libsvm import load_libsvm
from .mnist import find_idx_files, load_fashion_mnist, load_mnist, read_idx
from .synthetic import binary_logistic, gaussian_blobs, peaks, spirals, synthetic_images

__all__ = [
    "DatasetError",
    "read_idx",
    "find_idx_files",
    "find_cifar10_files",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "read_cifar_batch",
    "load_libsvm",
    "gaussian_blobs",
    "spirals",
    "peaks",
    "binary_logistic",
    "synthetic_images",
    "load_digits",
    "load_breast_cancer",
]
