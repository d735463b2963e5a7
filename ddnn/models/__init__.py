"""Networks, registered by name (kind ``model``)."""

from ddnn.models.cnn import CNN, CNNOptions
from ddnn.models.linear import Linear, LinearOptions
from ddnn.models.mlp import MLP, MLPOptions
from ddnn.models.resnet import ResNet, ResNetOptions

__all__ = ["MLP", "MLPOptions", "CNN", "CNNOptions", "Linear", "LinearOptions", "ResNet", "ResNetOptions"]
