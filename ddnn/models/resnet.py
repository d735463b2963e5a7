"""Residual networks as forward-Euler discretisations, and their hierarchy in depth.

A ResNet of N residual blocks on [0, T] is the forward-Euler scheme

    x_{j+1} = x_j + h σ(W_j x_j + b_j),   h = T / N,   j = 0, …, N − 1,

between an input layer (features → width) and an output layer (width →
classes), which lie outside the residual stack. Halving N doubles h: the
network with N/2 blocks discretises the same continuous dynamics on a
coarser grid in time, which is what the multilevel methods across depth
(RMTR, MG/OPT) exploit. ``dense`` blocks are affine maps of a width-d
state (2-D and tabular data); ``conv`` blocks are 3×3 convolutions with
``channels`` feature maps (images), after a convolutional input layer, with
global average pooling before the output layer.

References
----------
E. Haber, L. Ruthotto, Stable architectures for deep neural networks, Inverse Problems 34 (2018) 014004.
A. Kopaničáková, R. Krause, Globally convergent multilevel training of deep residual networks,
SIAM J. Sci. Comput. 45 (2023) S254–S280.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ddnn.errors import ConfigError
from ddnn.models.mlp import ACTIVATIONS
from ddnn.options import option
from ddnn.registry import register

__all__ = ["ResNet", "ResNetOptions"]


@dataclass(frozen=True)
class ResNetOptions:
    kind: Literal["dense", "conv"] = option("dense", "dense blocks (vectors) or 3x3 convolutional blocks (images)")
    width: int = option(16, "dense: neurons of the state; conv: feature maps", min=1, max=10**5)
    blocks: int = option(8, "number N of residual blocks", min=1, max=10**4)
    final_time: float = option(1.0, "T: the step is h = T / N", gt=0.0)
    activation: Literal["tanh", "relu", "sigmoid", "gelu", "silu"] = option("tanh", "σ of every block")


@register("model", "resnet", ResNetOptions)
class ResNet(nn.Module):
    """Forward-Euler residual network: input layer, N blocks x + h σ(W x + b), output layer."""

    def __init__(self, options: ResNetOptions, input_shape: int | tuple[int, ...], out_features: int):
        super().__init__()
        self.options = options
        self.input_shape = input_shape if isinstance(input_shape, tuple) else (int(input_shape),)
        self.out_features = out_features
        self.h = options.final_time / options.blocks
        self._act = ACTIVATIONS[options.activation]()
        width = options.width
        if options.kind == "dense":
            self.inp = nn.Linear(math.prod(self.input_shape), width)
            self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(options.blocks))
        else:
            if len(self.input_shape) != 3:
                raise ConfigError("model.kind", f"conv blocks need image inputs (C, H, W), got {self.input_shape}")
            self.inp = nn.Conv2d(self.input_shape[0], width, 3, padding=1)
            self.blocks = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(options.blocks))
        self.out = nn.Linear(width, out_features)
        with torch.no_grad():  # blocks start small so that the ODE starts near the identity
            for block in self.blocks:
                nn.init.normal_(block.weight, 0.0, 1.0 / math.sqrt(block.weight[0].numel()))
                block.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.options.kind == "dense":
            x = self._act(self.inp(x.flatten(1) if x.dim() > 2 else x))
        else:
            x = self._act(self.inp(x))
        for block in self.blocks:
            x = x + self.h * self._act(block(x))
        if self.options.kind == "conv":
            x = x.mean(dim=(2, 3))
        return self.out(x)

    def coarsened(self, factor: int) -> ResNet:
        """The same network with N / ``factor`` blocks (step ``factor`` h), freshly initialised."""
        if self.options.blocks % factor:
            raise ConfigError("model.blocks", f"{self.options.blocks} blocks cannot be coarsened by {factor}")
        options = dataclasses.replace(self.options, blocks=self.options.blocks // factor)
        return ResNet(options, self.input_shape, self.out_features)

    def block_span(self) -> tuple[int, int, int]:
        """(offset, parameters per block, blocks): where the residual blocks lie in the flat parameter vector.

        The flat order is the input layer, the blocks in depth order, the output layer.
        """
        offset = sum(p.numel() for p in self.inp.parameters())
        per_block = sum(p.numel() for p in self.blocks[0].parameters())
        return offset, per_block, len(self.blocks)
