"""Physics-informed neural network problems of the seed: Burgers, Klein–Gordon, diffusion–transport.

Importing this package registers the problems ``burgers``,
``klein_gordon`` and ``diffusion_transport``.
"""

from ddnn.problems.pinn.base import PINNOptions, PINNProblem, TimeDependentPINNOptions
from ddnn.problems.pinn.burgers import Burgers, BurgersOptions
from ddnn.problems.pinn.diffusion_transport import DiffusionTransport, DiffusionTransportOptions
from ddnn.problems.pinn.klein_gordon import KleinGordon, KleinGordonOptions

__all__ = [
    "PINNOptions",
    "TimeDependentPINNOptions",
    "PINNProblem",
    "Burgers",
    "BurgersOptions",
    "KleinGordon",
    "KleinGordonOptions",
    "DiffusionTransport",
    "DiffusionTransportOptions",
]
