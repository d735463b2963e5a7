"""Classification: cross-entropy on labelled inputs of any shape; accuracy and loss on a test set.

Data sets (``problem.dataset``):

* ``mnist``, ``fashion_mnist`` — IDX files under ``data_dir`` (1×28×28, 10 classes);
* ``cifar10`` — the python batches under ``data_dir`` (3×32×32, 10 classes);
* ``digits`` — scikit-learn's bundled handwritten digits (1×8×8, 10 classes,
  1,797 images, no download; the ``data`` extra), split by a seeded permutation;
* ``blobs``, ``spirals``, ``peaks``, ``images`` — seeded synthetic sets of any
  size (Gaussian clusters, interleaved 2-D spirals, the level bands of the
  peaks function, class-patterned images).

The training set is one loss term ``data`` whose rows are ``(inputs, labels)``:
inputs in the problem's dtype, labels int64. Images are scaled to [0, 1] and
standardised with the usual per-channel means and deviations of their data
set. The metrics are the test accuracy and the mean test cross-entropy,
computed sharded over ranks.

References
----------
Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to
document recognition", Proc. IEEE 86 (1998) 2278-2324 (MNIST).
A. Krizhevsky, "Learning multiple layers of features from tiny images",
University of Toronto (2009) (CIFAR-10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F

from ddnn import datasets
from ddnn.errors import ConfigError
from ddnn.options import option
from ddnn.problems.base import Problem, Samples, share
from ddnn.registry import register

__all__ = ["ClassificationOptions", "Classification"]

# per-channel mean and standard deviation of the training images (scaled to [0, 1])
_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
_FILES = ("mnist", "fashion_mnist", "cifar10")


@dataclass(frozen=True)
class ClassificationOptions:
    dataset: Literal["blobs", "spirals", "peaks", "images", "digits", "mnist", "fashion_mnist", "cifar10"] = option(
        "blobs", "the data set (mnist, fashion_mnist, cifar10 read files under data_dir)"
    )
    data_dir: Optional[str] = option(None, "directory of the data files (mnist, fashion_mnist, cifar10)")
    n_train: int = option(2000, "synthetic sets: training samples", min=1, max=10**8)
    n_test: int = option(500, "synthetic sets: test samples", min=1, max=10**8)
    train_subset: Optional[int] = option(None, "use only the first N training samples (quick runs)", min=1)
    test_subset: Optional[int] = option(None, "use only the first N test samples", min=1)
    test_fraction: float = option(0.25, "digits: share of the 1,797 images held out for testing", gt=0.0, lt=1.0)
    features: int = option(2, "blobs: input dimension", min=1, max=10**5)
    classes: int = option(3, "synthetic sets: number of classes", min=2, max=10**4)
    image_size: int = option(16, "images: height and width", min=4, max=1024)
    channels: int = option(1, "images: channels", min=1, max=64)
    noise: float = option(0.2, "spirals: standard deviation of the noise", min=0.0)
    normalize: bool = option(True, "standardise image channels with the data set's mean and deviation")


@register("problem", "classification", ClassificationOptions)
class Classification(Problem):
    """Classification with the cross-entropy loss (mean over samples); test accuracy and loss as metrics."""

    default_model = {"name": "mlp", "width": 32, "depth": 2, "activation": "relu"}
    metrics_names = ("accuracy", "test_loss")
    higher_is_better = frozenset({"accuracy"})

    def __init__(self, options: ClassificationOptions, model, *, device, dtype, seed):
        super().__init__(options, model, device=device, dtype=dtype, seed=seed)
        (x_train, y_train), (x_test, y_test) = _load(options, seed)
        if options.train_subset is not None:
            x_train, y_train = x_train[: options.train_subset], y_train[: options.train_subset]
        if options.test_subset is not None:
            x_test, y_test = x_test[: options.test_subset], y_test[: options.test_subset]
        self._train = Samples.whole({"data": (x_train, y_train)}).to(self.device, dtype)
        self._test = (x_test.to(self.device, dtype), y_test.to(self.device))

    @classmethod
    def data_shapes(cls, options: ClassificationOptions) -> tuple[tuple[int, ...], int]:
        name = options.dataset
        if name in ("mnist", "fashion_mnist"):
            return (1, 28, 28), 10
        if name == "cifar10":
            return (3, 32, 32), 10
        if name == "digits":
            return (1, 8, 8), 10
        if name == "blobs":
            return (options.features,), options.classes
        if name in ("spirals", "peaks"):
            return (2,), options.classes
        return (options.channels, options.image_size, options.image_size), options.classes

    @classmethod
    def check_setup(cls, options: ClassificationOptions, setup: Any, key: str) -> None:
        """Data files must be where the input says (checked without reading them)."""
        if options.dataset not in _FILES:
            return
        if options.data_dir is None:
            raise ConfigError(f"{key}.data_dir", f"dataset {options.dataset} reads files: set data_dir")
        try:
            for split in ("train", "test"):
                if options.dataset == "cifar10":
                    datasets.find_cifar10_files(options.data_dir, split)
                else:
                    datasets.find_idx_files(options.data_dir, split, fashion=options.dataset == "fashion_mnist")
        except datasets.DatasetError as err:
            raise ConfigError(f"{key}.data_dir", str(err)) from None

    def training_samples(self, draw: int = 0) -> Samples:
        return self._train

    def loss_terms(self, samples: Samples, *, second_order: bool = False) -> dict[str, torch.Tensor]:
        x, y = samples.terms["data"]
        logits = self.model(x)
        return {"data": F.cross_entropy(logits, y, reduction="sum") / samples.counts["data"]}

    @torch.no_grad()
    def metric_parts(self, part: int = 0, parts: int = 1) -> dict[str, float]:
        x, y = self._test
        rows = share(x.shape[0], part, parts)
        logits = self.model(x[rows])
        return {
            "correct": float((logits.argmax(1) == y[rows]).sum()),
            "loss_sum": float(F.cross_entropy(logits.to(torch.float64), y[rows], reduction="sum")),
            "count": float(logits.shape[0]),
        }

    def metrics_from(self, sums: dict[str, float]) -> dict[str, float]:
        count = max(sums["count"], 1.0)
        return {"accuracy": sums["correct"] / count, "test_loss": sums["loss_sum"] / count}


def _load(options: ClassificationOptions, seed: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """(train, test) pairs of (float64 or uint8 inputs, int64 labels)."""
    name = options.dataset
    if name in _FILES:
        if options.data_dir is None:
            raise ConfigError("problem.data_dir", f"dataset {name} reads files: set data_dir")
        if name == "cifar10":
            pairs = [datasets.load_cifar10(options.data_dir, split) for split in ("train", "test")]
        elif name == "mnist":
            pairs = [datasets.load_mnist(options.data_dir, split) for split in ("train", "test")]
            pairs = [(x[:, None], y) for x, y in pairs]
        else:
            pairs = [datasets.load_fashion_mnist(options.data_dir, split) for split in ("train", "test")]
            pairs = [(x[:, None], y) for x, y in pairs]
        return tuple((_scale(x, name, options.normalize), y) for x, y in pairs)
    if name == "digits":
        x, y = datasets.load_digits()
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        n_test = max(1, round(options.test_fraction * x.shape[0]))
        test, train = order[:n_test], order[n_test:]
        return (x[train], y[train]), (x[test], y[test])
    if name == "blobs":
        make = lambda n, s: datasets.gaussian_blobs(n, options.features, options.classes, s)  # noqa: E731
    elif name == "spirals":
        make = lambda n, s: datasets.spirals(n, options.classes, s, options.noise)  # noqa: E731
    elif name == "peaks":
        make = lambda n, s: datasets.peaks(n, options.classes, s)  # noqa: E731
    else:

        def make(n: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = datasets.synthetic_images(
                n, options.channels, options.image_size, options.image_size, options.classes, s
            )
            return x.to(torch.float64) / 255.0, y

    # one draw, split: the test set comes from the same distribution (the same class centres)
    x, y = make(options.n_train + options.n_test, seed)
    n = options.n_train
    return (x[:n], y[:n]), (x[n:], y[n:])


def _scale(images: torch.Tensor, name: str, normalize: bool) -> torch.Tensor:
    """uint8 images -> [0, 1], then standardised per channel."""
    x = images.to(torch.float64) / 255.0
    if normalize:
        mean, std = (torch.tensor(v, dtype=torch.float64)[None, :, None, None] for v in _STATS[name])
        x = (x - mean) / std
    return x
