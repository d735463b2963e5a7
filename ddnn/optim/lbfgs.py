"""A drop-in replacement of ``torch.optim.LBFGS`` backed by ddnn's L-BFGS.

``ddnn.optim.LBFGS`` takes ``torch.optim.LBFGS``'s arguments with their
meaning, so swapping the import is the whole change:

* ``lr`` — the step length without a line search, the first trial step
  with one (scaled by ``min(1, 1/‖g‖₁)`` at the first iteration, as torch);
* ``max_iter`` — iterations per :meth:`step`; ``max_eval`` — the step ends
  once it spent this many closure calls (default ``max_iter * 5 // 4``);
* ``tolerance_grad`` — no iteration when ``max |gᵢ| ≤ tolerance_grad``;
* ``tolerance_change`` — the step ends when an accepted iteration changes
  the loss by less, or no parameter by more;
* ``history_size`` — secant pairs kept; ``line_search_fn`` — ``None``
  (fixed steps of ``lr``) or ``"strong_wolfe"`` (also ddnn's ``"armijo"``,
  or a mapping such as ``{"name": "strong_wolfe", "c2": 0.5}``).

:meth:`step` returns the loss at the start of the step in the closure's
dtype, as torch. Differences from torch's implementation, all documented
ddnn behaviour (:class:`ddnn.solvers.lbfgs.LBFGS`): a secant pair is skipped
when ``yᵀs ≤ ε‖s‖‖y‖`` (``curvature_eps``, relative) instead of ``yᵀs ≤ 1e-10``;
a failed line search drops the history and restarts from steepest descent;
the loss and gradient a step ends with are reused by the next step when the
closure is the same object (``reevaluate="auto"``), where torch calls the
closure again; ``momentum`` (μ < 1) is available. The state counts
``func_evals`` (closure calls) and ``n_iter`` (iterations) under the first
parameter, as torch, and ``state["closure_calls"]``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ddnn.solvers.base import StepReport

from .optimizer import OptionError, SolverOptimizer

__all__ = ["LBFGS", "line_search_section"]

_TORCH_DEFAULTS = {"history_size": 100, "line_search_fn": None, "tolerance_grad": 1e-7}


def line_search_section(value: Any, key: str) -> Any:
    """ddnn's line search for torch's ``line_search_fn`` (``None``: fixed steps; ``"strong_wolfe"``)."""
    if value is None:
        return "fixed"
    if isinstance(value, str) and value in ("strong_wolfe", "armijo", "fixed"):
        return value
    if isinstance(value, dict) and "name" in value:
        return dict(value)
    raise OptionError(key, f"expected None or 'strong_wolfe' (or ddnn's 'armijo', 'fixed'), got {value!r}")


def _number(value: Any, key: str, low: float, strict: bool) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise OptionError(key, f"expected a number, got {value!r}")
    if (value <= low) if strict else (value < low):
        raise OptionError(key, f"expected a number {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


def _integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(key, f"expected an integer >= 1, got {value!r}")
    return value


class LBFGS(SolverOptimizer):
    """L-BFGS with ``torch.optim.LBFGS``'s arguments (see the module docstring).

    Parameters
    ----------
    params, lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size, line_search_fn :
        as ``torch.optim.LBFGS``
    momentum : μ in v ← (1 − μ) v + μ p (1: none; Kopaničáková et al. 2024)
    curvature_eps : skip a secant pair when ``yᵀs ≤ ε‖s‖‖y‖``
    first_step : ``"scaled"`` (torch's first trial step) or ``"unit"`` (``lr``)
    npc : a nonlinear preconditioner section, e.g. ``{"name": "schwarz"}``
        (ASPQN; :class:`~ddnn.optim.ASPQN` is the convenient form)
    memory, line_search, grad_tol : ddnn's names of ``history_size``,
        ``line_search_fn`` and ``tolerance_grad`` (they win when given)
    reevaluate, comm, module, blocks : as :class:`~ddnn.optim.SolverOptimizer`

    Raises
    ------
    ValueError
        (:class:`~ddnn.optim.OptionError`) naming an invalid option.
    """

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | dict | None = None,
        *,
        momentum: float = 1.0,
        curvature_eps: float = 1e-8,
        first_step: str = "scaled",
        npc: Any = None,
        memory: int | None = None,
        line_search: str | dict | None = None,
        grad_tol: float | None = None,
        reevaluate: bool | str = "auto",
        comm: Any = None,
        module: nn.Module | None = None,
        blocks: Any = None,
    ):
        given = {"history_size": history_size, "line_search_fn": line_search_fn, "tolerance_grad": tolerance_grad}
        key = {name: f"LBFGS.{name}" for name in given}
        for torch_name, alias, value in (
            ("history_size", "memory", memory),
            ("line_search_fn", "line_search", line_search),
            ("tolerance_grad", "grad_tol", grad_tol),
        ):
            if value is not None:
                if given[torch_name] != _TORCH_DEFAULTS[torch_name]:
                    raise OptionError(f"LBFGS.{alias}", f"given together with {torch_name}; give one of them")
                given[torch_name], key[torch_name] = value, f"LBFGS.{alias}"
        history_size, line_search_fn, tolerance_grad = (
            given["history_size"],
            given["line_search_fn"],
            given["tolerance_grad"],
        )
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise OptionError("LBFGS.lr", "a tensor lr must have one element")
        _number(lr, "LBFGS.lr", 0.0, strict=True)
        max_iter = _integer(max_iter, "LBFGS.max_iter")
        max_eval = max_iter * 5 // 4 if max_eval is None else _integer(max_eval, "LBFGS.max_eval")
        # as in torch, a negative tolerance never ends a step
        tolerance_grad = _number(tolerance_grad, key["tolerance_grad"], -math.inf, strict=False)
        tolerance_change = _number(tolerance_change, "LBFGS.tolerance_change", -math.inf, strict=False)
        history_size = _integer(history_size, key["history_size"])
        search = line_search_section(line_search_fn, key["line_search_fn"])
        options: dict[str, Any] = {
            "lr": lr,
            "memory": history_size,
            "line_search": search,
            "momentum": momentum,
            "curvature_eps": curvature_eps,
            "first_step": first_step,
            "grad_tol": max(tolerance_grad, 0.0),
        }
        if npc is not None:
            options["npc"] = npc
        group = {
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        self._init(
            params,
            "lbfgs",
            options,
            group,
            {"tolerance_grad": "grad_tol"},
            ("history_size", "line_search_fn"),
            max_iter,
            reevaluate,
            comm,
            module,
            blocks,
        )

    def _option_value(self, key: str, value: Any) -> Any:
        return max(float(value), 0.0) if key == "tolerance_grad" else value  # ddnn's grad_tol 0 is torch's "never"

    def _before_iteration(self) -> Any:
        return self.solver.theta.clone() if self.param_groups[0]["tolerance_change"] > 0 else None

    def _stop(self, report: StepReport, previous_loss: float | None, before: Any, calls: float) -> bool:
        """torch's rules: the step's closure budget ``max_eval``, and ``tolerance_change`` on loss and parameters."""
        group = self.param_groups[0]
        if self.counters["closure_calls"] - calls >= group["max_eval"]:
            return True
        tol = group["tolerance_change"]
        if tol <= 0 or not report.accepted:
            return False
        if previous_loss is not None and abs(report.loss - previous_loss) < tol:
            return True
        return before is not None and float((self.solver.theta - before).abs().max()) <= tol

    def _publish(self) -> None:
        """``state["closure_calls"]``, and torch's ``func_evals`` and ``n_iter`` under the first parameter."""
        super()._publish()
        first = self.state[self.param_groups[0]["params"][0]]
        first["func_evals"] = int(self.counters["closure_calls"])
        first["n_iter"] = int(self.counters["iterations"])
