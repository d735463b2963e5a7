"""Training problems, registered by name (kind ``problem``)."""

from ddnn.problems import regression  # noqa: F401
