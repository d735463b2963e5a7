"""Fully connected networks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ddnn.options import option
from ddnn.registry import register

__all__ = ["MLP", "MLPOptions", "ACTIVATIONS"]

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "silu": nn.SiLU}


@dataclass(frozen=True)
class MLPOptions:
    width: int = option(20, "neurons per hidden layer", min=1, max=10**6)
    depth: int = option(8, "number of hidden layers", min=1, max=10**4)
    activation: Literal["tanh", "relu", "sigmoid", "gelu", "silu"] = option("tanh", "hidden activation")
    init: Literal["xavier_normal", "xavier_uniform", "default"] = option(
        "xavier_normal", "weight initialisation (biases start at zero unless 'default')"
    )


@register("model", "mlp", MLPOptions)
class MLP(nn.Module):
    """Multilayer perceptron: ``depth`` hidden layers of ``width`` neurons, linear output.

    ``linears`` lists the affine layers in order; the hidden activation is
    ``activation``. Problems with a fast derivative path read both. Inputs
    of several dimensions (images) are flattened.

    Parameters
    ----------
    options : :class:`MLPOptions`
    input_shape : the shape of one input (an ``int`` for a vector)
    out_features : output size
    """

    def __init__(self, options: MLPOptions, input_shape: int | tuple[int, ...], out_features: int):
        super().__init__()
        self.options = options
        in_features = math.prod(input_shape) if isinstance(input_shape, tuple) else int(input_shape)
        sizes = [in_features] + [options.width] * options.depth + [out_features]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation = options.activation
        self._act = ACTIVATIONS[options.activation]()
        if options.init != "default":
            init = nn.init.xavier_normal_ if options.init == "xavier_normal" else nn.init.xavier_uniform_
            with torch.no_grad():
                for lin in self.linears:
                    init(lin.weight)
                    lin.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = x.flatten(1)
        *hidden, last = self.linears
        for lin in hidden:
            x = self._act(lin(x))
        return last(x)
