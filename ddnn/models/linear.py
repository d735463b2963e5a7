"""A linear model: logits = W x (+ b), for logistic regression and other generalised linear models."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ddnn.options import option
from ddnn.registry import register

__all__ = ["Linear", "LinearOptions"]


@dataclass(frozen=True)
class LinearOptions:
    bias: bool = option(False, "add a bias (intercept) to every output")
    init: float = option(
        0.0, "initial weights: 0 (the usual start of convex problems) or this standard deviation", min=0.0
    )


@register("model", "linear", LinearOptions)
class Linear(nn.Module):
    """One affine map of the (flattened) input: the model of logistic regression."""

    def __init__(self, options: LinearOptions, input_shape: int | tuple[int, ...], out_features: int):
        super().__init__()
        in_features = math.prod(input_shape) if isinstance(input_shape, tuple) else int(input_shape)
        self.linear = nn.Linear(in_features, out_features, bias=options.bias)
        with torch.no_grad():
            if options.init == 0.0:
                self.linear.weight.zero_()
            else:
                self.linear.weight.normal_(0.0, options.init)
            if self.linear.bias is not None:
                self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1) if x.dim() > 2 else x)
