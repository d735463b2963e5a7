"""Training problems, registered by name (kind ``problem``)."""
