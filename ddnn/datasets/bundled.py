"""Small data sets that ship inside scikit-learn (no download), imported lazily.

scikit-learn is an optional dependency (the ``data`` extra); without it these
loaders raise :class:`DatasetError` with the command that installs it.

References
----------
E. Alpaydin and C. Kaynak, "Optical recognition of handwritten digits", UCI Machine Learning
Repository (1998) (scikit-learn's ``load_digits``: the 1797 test images at 8 x 8).
W. N. Street, W. H. Wolberg and O. L. Mangasarian, "Nuclear feature extraction for breast tumor
diagnosis", Proc. SPIE 1905 (1993) (the Wisconsin diagnostic breast cancer data, ``load_breast_cancer``).
F. Pedregosa et al., "Scikit-learn: machine learning in Python", JMLR 12, 2825-2830 (2011).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch

from .errors import DatasetError

__all__ = ["load_digits", "load_breast_cancer"]


def _sklearn_datasets(name: str) -> ModuleType:
    """``sklearn.datasets``, or a DatasetError saying how to install scikit-learn."""
    try:
        import sklearn.datasets as datasets
    except ImportError as exc:
        raise DatasetError(f"scikit-learn is needed for dataset {name!r}: pip install 'ddnn[data]'") from exc
    return datasets


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1797 handwritten digits of 8 x 8 pixels bundled with scikit-learn, as one-channel images.

    Returns
    -------
    images : torch.float64 tensor of shape (1797, 1, 8, 8), grey levels 0..16 divided by 16 (in [0, 1])
    labels : torch.int64 tensor of shape (1797,), values in 0..9

    Raises
    ------
    DatasetError : scikit-learn is not installed

    References
    ----------
    E. Alpaydin and C. Kaynak, "Optical recognition of handwritten digits", UCI Machine Learning Repository (1998).
    """
    bunch = _sklearn_datasets("digits").load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)[:, None, :, :] / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.copy())


def load_breast_cancer() -> tuple[torch.Tensor, torch.Tensor]:
    """The Wisconsin diagnostic breast cancer data bundled with scikit-learn, labels -1/+1.

    Returns
    -------
    X : torch.float64 tensor of shape (569, 30), the raw (unscaled) features
    y : torch.float64 tensor of shape (569,): -1 for malignant (scikit-learn's target 0),
        +1 for benign (target 1)

    Raises
    ------
    DatasetError : scikit-learn is not installed

    References
    ----------
    W. N. Street, W. H. Wolberg and O. L. Mangasarian, "Nuclear feature extraction for breast tumor diagnosis",
    Proc. SPIE 1905, 861-870 (1993).
    """
    bunch = _sklearn_datasets("breast_cancer").load_breast_cancer()
    X = np.array(bunch.data, dtype=np.float64)
    y = np.where(np.asarray(bunch.target) == 1, 1.0, -1.0)
    return torch.from_numpy(X), torch.from_numpy(y)
