"""Training problems, registered by name (kind ``problem``)."""

from ddnn.problems import classification, pinn, regression  # noqa: F401
