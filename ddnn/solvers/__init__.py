"""Optimisers, registered by name (kind ``solver``); nested solvers compose."""
