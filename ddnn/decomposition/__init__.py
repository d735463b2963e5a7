"""Subdomains: blocks of layers (weight space) and chunks of samples (data space)."""

from ddnn.decomposition.layers import LayerBlock, LayerDecomposition, split_layers

__all__ = ["LayerBlock", "LayerDecomposition", "split_layers"]
