"""ASPQN and MSPQN from library code: L-BFGS right-preconditioned by nonlinear Schwarz over blocks of parameters.

One :meth:`~ddnn.optim.SolverOptimizer.step` (``max_iter=1``) is one outer
iteration of Kopaničáková et al. (2024), Alg. 1: every block s solves its
local problem — the loss as a function of the block's parameters, the other
blocks held at θᵏ — by ``local_iters`` steps of a local L-BFGS; the
corrections are combined additively (ASPQN: all blocks from θᵏ, summed, a
line search on the sum) or multiplicatively (MSPQN: one block after the
other); then a global L-BFGS step with its own line search and secant pair
follows from the preconditioned point.

The blocks come from the user (:mod:`ddnn.optim.blocks`): the param groups,
the module's layers (``blocks="layers"``, grouped into ``subdomains``
consecutive blocks as ``python -m ddnn`` groups them), its children, or
module names. Serially the blocks are solved one after another (additive
semantics kept: every block starts from θᵏ). With ``comm`` the blocks of
ASPQN are shared among the ranks and solved at the same time, and every
global evaluation is reduced over the ranks; the closure then takes a
``shard`` argument (:mod:`ddnn.optim.closure`). MSPQN evaluates every local
problem data parallel over all ranks, so a plain ``closure()`` of each rank's
own data works.

References
----------
A. Kopaničáková, H. Kothari, G. E. Karniadakis, R. Krause, Enhancing training
of physics-informed neural networks using domain decomposition–based
preconditioning strategies, *SIAM J. Sci. Comput.* 46 (2024), Alg. 1 and §3.
P. R. Brune, M. G. Knepley, B. F. Smith, X. Tu, Composing scalable nonlinear
algebraic solvers, *SIAM Review* 57 (2015), §3.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .optimizer import SolverOptimizer

__all__ = ["ASPQN", "MSPQN"]


class _SchwarzLBFGS(SolverOptimizer):
    """L-BFGS with a Schwarz preconditioner of the class's ``variant``."""

    variant: ClassVar[str] = "additive"

    def __init__(
        self,
        params: Any,
        blocks: Any = None,
        *,
        subdomains: int | None = None,
        module: nn.Module | None = None,
        comm: Any = None,
        max_iter: int = 1,
        lr: float | torch.Tensor = 1.0,
        memory: int = 3,
        line_search: str | dict = "strong_wolfe",
        momentum: float = 1.0,
        grad_tol: float = 0.0,
        local_iters: int = 5,
        local: str | dict = "lbfgs",
        overlap: int = 0,
        reset_local: bool = False,
        correction_line_search: str | dict = "armijo",
        reevaluate: bool | str = "auto",
    ):
        npc: dict[str, Any] = {
            "name": "schwarz",
            "variant": self.variant,
            "local_iters": local_iters,
            "local": local,
            "overlap": overlap,
            "reset_local": reset_local,
            "line_search": correction_line_search,
        }
        if subdomains is not None:
            npc["subdomains"] = subdomains
        options = {
            "lr": lr,
            "memory": memory,
            "line_search": line_search,
            "momentum": momentum,
            "grad_tol": grad_tol,
            "npc": npc,
        }
        self._init(params, "lbfgs", options, {}, {}, (), max_iter, reevaluate, comm, module, blocks)


class ASPQN(_SchwarzLBFGS):
    """Additive Schwarz preconditioned L-BFGS (ASPQN) for any module and closure.

    Parameters
    ----------
    params : the module (``ASPQN(model, ...)``), its parameters, or param
        groups (each group one block)
    blocks : ``None`` (param groups if several, else the module's layers),
        ``"layers"``, ``"children"`` or a list of module names (:mod:`ddnn.optim.blocks`)
    subdomains : number S of subdomains the blocks are grouped into
        (consecutive; default: every block its own)
    module : the module, when ``params`` are its parameters
    comm : ``None`` (serial) or the ranks to share the subdomains and reduce over
        (:func:`ddnn.optim.comm.resolve_comm`)
    max_iter : outer iterations per :meth:`step`
    lr, memory, line_search, momentum, grad_tol : the global L-BFGS (:class:`ddnn.solvers.lbfgs.LBFGSOptions`)
    local_iters : local solver steps per subdomain and outer iteration
    local : the local solver (a name or a mapping, default L-BFGS with m = 3 and strong Wolfe)
    overlap : whole blocks shared with each neighbouring subdomain (partition of unity)
    reset_local : a fresh local solver for every local solve (else each keeps its history)
    correction_line_search : the line search on the summed correction
    reevaluate : as :class:`~ddnn.optim.SolverOptimizer`

    Examples
    --------
    >>> opt = ASPQN(model, blocks="layers", subdomains=4)            # doctest: +SKIP
    >>> for _ in range(100):                                          # doctest: +SKIP
    ...     opt.step(closure)

    References
    ----------
    A. Kopaničáková, H. Kothari, G. E. Karniadakis, R. Krause, *SIAM J. Sci. Comput.* 46 (2024).
    """

    variant = "additive"


class MSPQN(_SchwarzLBFGS):
    """Multiplicative Schwarz preconditioned L-BFGS (MSPQN): as :class:`ASPQN`, blocks solved in sequence.

    Every subdomain starts from the blocks already updated; the sweep is
    taken as it is (``correction_line_search`` is not used). With ``comm``
    every local evaluation is data parallel over all ranks.
    """

    variant = "multiplicative"
