"""Optimisers, registered by name (kind ``solver``), and the pieces they share.

Trust-region subproblem solvers register under the kind ``subproblem``;
line searches under ``line_search``. Nested solvers compose.
"""

from ddnn.solvers import first_order, lbfgs, line_search, schwarz, subproblem, trust_region  # noqa: F401
