"""Networks, registered by name (kind ``model``)."""

from ddnn.models.mlp import MLP, MLPOptions

__all__ = ["MLP", "MLPOptions"]
