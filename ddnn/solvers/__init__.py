"""Optimisers, registered by name (kind ``solver``), and the pieces they share.

Trust-region subproblem solvers register under the kind ``subproblem``;
line searches under ``line_search``. Nested solvers compose. The modules
that register components are imported by
:func:`ddnn.registry.load_builtin_components` (not here, so that importing
one piece, e.g. :mod:`ddnn.solvers.objective`, does not import every solver).
"""

#: modules whose import registers ddnn's solvers, line searches and subproblem solvers
MODULES = (
    "first_order",
    "lbfgs",
    "line_search",
    "multilevel",
    "newton",
    "schwarz",
    "subproblem",
    "trust_region",
)
