"""Convolutional networks for image classification (LeNet-5 style)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ddnn.errors import ConfigError
from ddnn.models.mlp import ACTIVATIONS
from ddnn.options import option
from ddnn.registry import register

__all__ = ["CNN", "CNNOptions"]


@dataclass(frozen=True)
class CNNOptions:
    channels: tuple[int, ...] = option(
        (6, 16), "output channels of each convolution (each followed by 2x2 pooling)", min=1
    )
    kernel: int = option(5, "square kernel size of every convolution (no padding)", min=1, max=31)
    hidden: tuple[int, ...] = option((120, 84), "widths of the fully connected hidden layers", min=1)
    activation: Literal["relu", "tanh", "sigmoid", "gelu", "silu"] = option("relu", "activation after every layer")
    pool: Literal["max", "avg"] = option("max", "2x2 pooling after every convolution")


@register("model", "cnn", CNNOptions)
class CNN(nn.Module):
    """LeNet-5-like CNN: [conv k×k → activation → 2×2 pool] per channel entry, then dense layers, linear output.

    With the defaults on 3×32×32 inputs and 10 classes this is the 62,006-parameter
    network of the seed's CIFAR-10 experiments (conv 6 and 16 channels 5×5, dense 120, 84).
    Every convolution and dense layer is one "layer" of a layer decomposition.

    References
    ----------
    Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to document
    recognition", Proc. IEEE 86 (1998) 2278-2324.
    """

    def __init__(self, options: CNNOptions, input_shape: int | tuple[int, ...], out_features: int):
        super().__init__()
        if not isinstance(input_shape, tuple) or len(input_shape) != 3:
            raise ConfigError("model", f"a cnn needs image inputs (channels, height, width), got shape {input_shape}")
        channels, height, width = input_shape
        self.options = options
        self.convs = nn.ModuleList()
        for out_channels in options.channels:
            height, width = (height - options.kernel + 1) // 2, (width - options.kernel + 1) // 2
            if height < 1 or width < 1:
                raise ConfigError(
                    "model.channels",
                    f"{len(options.channels)} convolutions of size {options.kernel} shrink "
                    f"{input_shape[1]}x{input_shape[2]} images to nothing",
                )
            self.convs.append(nn.Conv2d(channels, out_channels, options.kernel))
            channels = out_channels
        sizes = [channels * height * width, *options.hidden, out_features]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self._act = ACTIVATIONS[options.activation]()
        self._pool = nn.MaxPool2d(2) if options.pool == "max" else nn.AvgPool2d(2)
        self.flat_features = math.prod((channels, height, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = self._pool(self._act(conv(x)))
        x = x.flatten(1)
        *hidden, last = self.linears
        for lin in hidden:
            x = self._act(lin(x))
        return last(x)
