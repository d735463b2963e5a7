"""Training problems, registered by name (kind ``problem``)."""

from ddnn.problems import pinn, regression  # noqa: F401
