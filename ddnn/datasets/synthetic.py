"""Seeded synthetic data sets for tests, examples and runs without downloaded data.

Every generator draws from its own ``torch.Generator().manual_seed(seed)``, never
from a global random state, so the same arguments give bit-identical tensors on
every machine and in every process of a parallel run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import DatasetError

__all__ = ["gaussian_blobs", "spirals", "peaks", "binary_logistic", "synthetic_images"]


def _generator(seed: int) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DatasetError(f"synthetic data: seed must be an integer, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def _positive(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DatasetError(f"synthetic data: {name} must be an integer of at least {minimum}, got {value!r}")
    return value


def _non_negative(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise DatasetError(f"synthetic data: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _balanced_labels(n: int, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` labels with class sizes differing by at most one, in random order."""
    return (torch.arange(n) % n_classes)[torch.randperm(n, generator=gen)]


def gaussian_blobs(
    n: int, n_features: int, n_classes: int, seed: int, separation: float = 3.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Isotropic Gaussian clusters, one per class, with unit standard deviation.

    The class centres are random directions scaled so that neighbouring centres lie
    about ``separation`` standard deviations apart (centres at distance
    ``separation / sqrt(2)`` from the origin).

    Parameters
    ----------
    n : number of points
    n_features : dimension of each point
    n_classes : number of clusters; class sizes differ by at most one
    seed : seed of the generator
    separation : distance scale between centres, in standard deviations

    Returns
    -------
    X : torch.float64 tensor of shape (n, n_features)
    y : torch.int64 tensor of shape (n,), values in 0..n_classes-1
    """
    n, d, k = _positive("n", n), _positive("n_features", n_features), _positive("n_classes", n_classes)
    separation = _non_negative("separation", separation)
    gen = _generator(seed)
    directions = torch.randn(k, d, generator=gen, dtype=torch.float64)
    centres = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12) * (separation / math.sqrt(2.0))
    y = _balanced_labels(n, k, gen)
    X = centres[y] + torch.randn(n, d, generator=gen, dtype=torch.float64)
    return X, y


def spirals(n: int, n_classes: int = 2, seed: int = 0, noise: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Interleaved 2-D spiral arms, one per class (the classic two-spirals problem for two classes).

    Arm ``c`` follows ``r = t``, ``angle = t + 2 pi c / n_classes`` for ``t`` in (0, 3 pi],
    with points denser near the centre, plus Gaussian noise of standard deviation ``noise``.

    Parameters
    ----------
    n : number of points; class sizes differ by at most one
    n_classes : number of arms
    seed : seed of the generator
    noise : standard deviation of the noise added to each coordinate

    Returns
    -------
    X : torch.float64 tensor of shape (n, 2), coordinates roughly in [-10, 10]
    y : torch.int64 tensor of shape (n,), values in 0..n_classes-1
    """
    n, k = _positive("n", n), _positive("n_classes", n_classes)
    noise = _non_negative("noise", noise)
    gen = _generator(seed)
    y = _balanced_labels(n, k, gen)
    t = 3.0 * math.pi * torch.sqrt(torch.rand(n, generator=gen, dtype=torch.float64).clamp_min(1e-3))
    angle = t + 2.0 * math.pi * y.to(torch.float64) / k
    X = torch.stack((t * torch.cos(angle), t * torch.sin(angle)), dim=1)
    X = X + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return X, y


def peaks(n: int, n_classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The "peaks" classification set of the multilevel-training literature.

    Points uniform in [−3, 3]², labelled by which of ``n_classes`` equally
    populated level bands of MATLAB's peaks function they fall in::

        p(x, y) = 3 (1 − x)² e^{−x² − (y + 1)²} − 10 (x/5 − x³ − y⁵) e^{−x² − y²} − e^{−(x + 1)² − y²} / 3

    Parameters
    ----------
    n : number of points
    n_classes : number of level bands (the band edges are quantiles of p over a fixed fine grid)
    seed : seed of the generator

    Returns
    -------
    X : torch.float64 tensor of shape (n, 2), coordinates in [−3, 3]
    y : torch.int64 tensor of shape (n,), values in 0..n_classes-1

    References
    ----------
    E. Haber, L. Ruthotto, Stable architectures for deep neural networks, Inverse Problems 34 (2018) 014004.
    """
    n, k = _positive("n", n), _positive("n_classes", n_classes)
    gen = _generator(seed)

    def p(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (
            3 * (1 - x) ** 2 * torch.exp(-(x**2) - (y + 1) ** 2)
            - 10 * (x / 5 - x**3 - y**5) * torch.exp(-(x**2) - y**2)
            - torch.exp(-((x + 1) ** 2) - y**2) / 3
        )

    grid = torch.linspace(-3, 3, 201, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")
    edges = torch.quantile(p(gx, gy).reshape(-1), torch.linspace(0, 1, k + 1, dtype=torch.float64)[1:-1])
    X = 6.0 * torch.rand(n, 2, generator=gen, dtype=torch.float64) - 3.0
    y = torch.bucketize(p(X[:, 0], X[:, 1]), edges)
    return X, y


def binary_logistic(
    n: int, n_features: int, seed: int, noise: float = 0.5, margin: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary classification data from a logistic model with a random ground-truth weight vector.

    Features are standard normal; ``w`` is a random direction scaled to norm ``margin``, so
    ``x . w`` has standard deviation ``margin``. The label is the sign of ``x . w + noise * e``
    with ``e`` standard logistic, i.e. ``P(y = +1 | x) = sigmoid(x . w / noise)``; ``noise = 0``
    gives linearly separable data. Australian-shaped (690 x 14) or gisette-shaped
    (6000 x 5000) stand-ins come from this.

    Parameters
    ----------
    n : number of examples
    n_features : number of features
    seed : seed of the generator
    noise : scale of the logistic noise added to the score
    margin : norm of the ground-truth weight vector

    Returns
    -------
    X : torch.float64 tensor of shape (n, n_features)
    y : torch.float64 tensor of shape (n,), values -1 and +1
    """
    n, d = _positive("n", n), _positive("n_features", n_features)
    noise, margin = _non_negative("noise", noise), _non_negative("margin", margin)
    gen = _generator(seed)
    w = torch.randn(d, generator=gen, dtype=torch.float64)
    w = w / w.norm().clamp_min(1e-12) * margin
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    u = torch.rand(n, generator=gen, dtype=torch.float64).clamp(1e-12, 1.0 - 1e-12)
    score = X @ w + noise * torch.log(u / (1.0 - u))
    y = torch.where(score >= 0, 1.0, -1.0).to(torch.float64)
    return X, y


def synthetic_images(
    n: int, channels: int, height: int, width: int, n_classes: int, seed: int, noise: float = 40.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Small images whose class is a smooth random pattern, plus pixel noise and random shifts.

    Each class gets a template: Gaussian noise on a quarter-resolution grid, upsampled
    bilinearly to ``height x width``. An image is ``128 + 60 * template`` of its class,
    shifted circularly by up to one eighth of the size in each direction, plus Gaussian
    pixel noise of standard deviation ``noise``, rounded and clipped to 0..255. A small
    CNN separates the classes well above chance after a few epochs.

    Parameters
    ----------
    n : number of images; class sizes differ by at most one
    channels, height, width : image shape
    n_classes : number of classes
    seed : seed of the generator
    noise : standard deviation of the pixel noise, in grey levels

    Returns
    -------
    images : torch.uint8 tensor of shape (n, channels, height, width)
    labels : torch.int64 tensor of shape (n,), values in 0..n_classes-1
    """
    n, c, k = _positive("n", n), _positive("channels", channels), _positive("n_classes", n_classes)
    h, w = _positive("height", height), _positive("width", width)
    noise = _non_negative("noise", noise)
    gen = _generator(seed)
    coarse = torch.randn(k, c, max(1, h // 4), max(1, w // 4), generator=gen)
    templates = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    templates = templates / templates.std(dim=(1, 2, 3), keepdim=True, correction=0).clamp_min(1e-6)
    y = _balanced_labels(n, k, gen)
    images = 128.0 + 60.0 * templates[y]
    images = _shift(images, max(h // 8, 0), max(w // 8, 0), gen)
    images = images + noise * torch.randn(n, c, h, w, generator=gen)
    return images.round().clamp(0, 255).to(torch.uint8), y


def _shift(images: torch.Tensor, max_dy: int, max_dx: int, gen: torch.Generator) -> torch.Tensor:
    """Roll every image by its own random offset in -max..max pixels along each axis."""
    n, _, h, w = images.shape
    dy = torch.randint(-max_dy, max_dy + 1, (n,), generator=gen)
    dx = torch.randint(-max_dx, max_dx + 1, (n,), generator=gen)
    rows = (torch.arange(h).view(1, h) - dy.view(n, 1)) % h
    cols = (torch.arange(w).view(1, w) - dx.view(n, 1)) % w
    index = rows.view(n, 1, h, 1) * w + cols.view(n, 1, 1, w)
    flat = images.reshape(n, images.shape[1], h * w)
    return flat.gather(2, index.reshape(n, 1, h * w).expand(-1, images.shape[1], -1)).view_as(images)
