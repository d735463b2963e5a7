"""Training problems, registered by name (kind ``problem``)."""

from ddnn.problems import classification, logistic, pinn, regression  # noqa: F401
