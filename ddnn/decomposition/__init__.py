"""Subdomains: blocks of layers (weight space) and chunks of samples (data space), one protocol."""

from ddnn.decomposition.base import Decomposition
from ddnn.decomposition.layers import LayerBlock, LayerDecomposition, split_layers
from ddnn.decomposition.samples import SampleDecomposition

__all__ = ["Decomposition", "LayerBlock", "LayerDecomposition", "SampleDecomposition", "split_layers"]
