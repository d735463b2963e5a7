"""Optimisers, registered by name (kind ``solver``); nested solvers compose."""

from ddnn.solvers import first_order, lbfgs, line_search, schwarz  # noqa: F401
