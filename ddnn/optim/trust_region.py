"""Trust-region methods from library code: :class:`TrustRegion` and APTS in weights (:class:`APTS`).

A trust region needs no learning rate: the radius adapts to how well a
quadratic model predicts the closure's loss (Nocedal & Wright 2006, Alg. 4.1;
:mod:`ddnn.solvers.trust_region`). A closure gives gradients only, so the
model's curvature comes from secant pairs (``hessian="sr1"`` or
``"lbfgs"``) or is zero (``order=1``); exact Hessian-vector products are refused.

:class:`APTS` is the additively preconditioned trust region in weights
(Gross & Krause 2009): the blocks (:mod:`ddnn.optim.blocks`) solve local
trust-region problems within the global radius (∞-norm), and the global ratio
test accepts or rejects the sum of their corrections.

References
----------
J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed., Springer 2006, Alg. 4.1.
C. Gross, R. Krause, On the convergence of recursive trust-region methods for
multiscale nonlinear optimization and applications to nonlinear mechanics,
*SIAM J. Numer. Anal.* 47 (2009) 3044–3069.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .optimizer import SolverOptimizer

__all__ = ["TrustRegion", "APTS"]


class TrustRegion(SolverOptimizer):
    """A trust-region method (:class:`ddnn.solvers.trust_region.TrustRegionOptions`) as a torch optimiser.

    Parameters
    ----------
    params : a module, tensors or param groups
    max_iter : trust-region iterations per :meth:`step`
    options : ``order``, ``hessian`` (``"sr1"``, ``"lbfgs"``), ``memory``,
        ``radius``, ``norm``, ``subproblem``, ... (``python -m ddnn --list``)
    reevaluate, comm, module, blocks : as :class:`~ddnn.optim.SolverOptimizer`
    """

    def __init__(
        self,
        params: Any,
        *,
        max_iter: int = 1,
        reevaluate: bool | str = "auto",
        comm: Any = None,
        module: nn.Module | None = None,
        blocks: Any = None,
        **options: Any,
    ):
        self._init(params, "trust_region", options, {}, {}, (), max_iter, reevaluate, comm, module, blocks)


class APTS(SolverOptimizer):
    """APTS in weights: a trust region around additive Schwarz over blocks of parameters with local trust regions.

    Parameters
    ----------
    params, blocks, subdomains, module, comm : as :class:`~ddnn.optim.ASPQN`
    local_iters : local trust-region steps per subdomain and outer iteration
    local : the local trust region's options (default: the global ``order``, ``hessian`` and ``norm``)
    overlap, reset_local : as :class:`~ddnn.optim.ASPQN`
    global_steps : plain global trust-region steps after every preconditioned one
    options : the global trust region's options (``norm`` defaults to ``"inf"``)
    """

    def __init__(
        self,
        params: Any,
        blocks: Any = None,
        *,
        subdomains: int | None = None,
        module: nn.Module | None = None,
        comm: Any = None,
        max_iter: int = 1,
        local_iters: int = 5,
        local: dict | None = None,
        overlap: int = 0,
        reset_local: bool = False,
        global_steps: int = 0,
        reevaluate: bool | str = "auto",
        **options: Any,
    ):
        options = {"norm": "inf", **options}
        if local is None:
            local = {k: v for k, v in options.items() if k in ("order", "hessian", "norm", "memory")}
        npc: dict[str, Any] = {
            "name": "schwarz",
            "variant": "additive",
            "local_iters": local_iters,
            "local": {"name": "trust_region", **local},
            "overlap": overlap,
            "reset_local": reset_local,
        }
        if subdomains is not None:
            npc["subdomains"] = subdomains
        options.update(npc=npc, global_steps=global_steps)
        self._init(params, "trust_region", options, {}, {}, (), max_iter, reevaluate, comm, module, blocks)
