"""Networks, registered by name (kind ``model``)."""

from ddnn.models.cnn import CNN, CNNOptions
from ddnn.models.linear import Linear, LinearOptions
from ddnn.models.mlp import MLP, MLPOptions

__all__ = ["MLP", "MLPOptions", "CNN", "CNNOptions", "Linear", "LinearOptions"]
