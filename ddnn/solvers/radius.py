"""Trust-region radius control: the ratio test, acceptance and the radius update, as one piece.

The globalisation of every trust-region method in ddnn — a trust region's
own steps, APTS's additive corrections, the coarse corrections of RMTR and
ASTROM — compares an actual decrease with a predicted one,

    ρ = (L(θ) − L(θ + s)) / predicted decrease,

accepts the step when ρ ≥ η, and shrinks or expands the radius Δ
(Nocedal & Wright 2006, Alg. 4.1). With ``window`` > 1 the actual decrease
is measured from the largest of the last ``window`` losses (non-monotone
acceptance, Toint 1997; the windowed acceptance of Angino et al. 2026).

References
----------
J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed., Springer 2006, Alg. 4.1.
Ph. L. Toint, Non-monotone trust-region algorithms for nonlinear optimization
subject to convex constraints, *Math. Program.* 77 (1997) 69–94.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ddnn.errors import ConfigError
from ddnn.options import option

__all__ = ["RadiusOptions", "RadiusControl"]


@dataclass(frozen=True)
class RadiusOptions:
    """Options of the radius control (shared by every trust-region method)."""

    radius: float = option(0.1, "initial radius Δ₀", gt=0.0)
    min_radius: float = option(1e-10, "the radius never shrinks below this", gt=0.0)
    max_radius: float = option(10.0, "the radius never grows above this", gt=0.0)
    eta: float = option(1e-4, "accept the step when ρ >= eta (N&W Alg. 4.1: eta in [0, 1/4))", min=0.0, lt=1.0)
    shrink_below: float = option(0.25, "shrink the radius when ρ < this (N&W Alg. 4.1)", gt=0.0, lt=1.0)
    expand_above: float = option(0.75, "expand when ρ > this and the step reached the boundary", gt=0.0, lt=1.0)
    shrink: float = option(0.25, "factor of a shrinking radius (N&W Alg. 4.1)", gt=0.0, lt=1.0)
    expand: float = option(2.0, "factor of an expanding radius (N&W Alg. 4.1)", gt=1.0, max=100.0)
    window: int = option(1, "non-monotone acceptance over the last N losses (1: monotone)", min=1, max=1000)

    def check(self, prefix: str) -> None:
        def key(name: str) -> str:
            return f"{prefix}.{name}" if prefix else name

        if not self.eta <= self.shrink_below <= self.expand_above:
            raise ConfigError(key("eta"), "need eta <= shrink_below <= expand_above")
        if not self.min_radius <= self.radius <= self.max_radius:
            raise ConfigError(key("radius"), "need min_radius <= radius <= max_radius")


class RadiusControl:
    """The radius Δ, the ratio test and the recent losses of a non-monotone acceptance.

    Parameters
    ----------
    options : anything with the fields of :class:`RadiusOptions`
    """

    def __init__(self, options: Any):
        self.options = options
        self.radius = float(options.radius)
        self.recent: list[float] = []  # losses of the last accepted iterates' predecessors

    def reset(self, radius: float | None = None) -> None:
        """Start again from Δ₀ (or ``radius``, kept inside [min_radius, max_radius])."""
        o = self.options
        self.radius = min(max(float(o.radius if radius is None else radius), o.min_radius), o.max_radius)
        self.recent = []

    def ratio(self, loss: float, trial: float, predicted: float) -> float:
        """ρ: actual over predicted decrease (from the largest recent loss when non-monotone; −∞ if not finite)."""
        if not math.isfinite(trial):
            return -math.inf
        window = self.options.window
        reference = max([loss, *self.recent[-(window - 1) :]]) if window > 1 else loss
        if predicted <= 0.0:
            return 1.0 if trial < reference else -math.inf
        return (reference - trial) / predicted

    def accepts(self, rho: float) -> bool:
        return rho >= self.options.eta

    def update(self, rho: float, on_boundary: bool) -> None:
        """Nocedal & Wright Alg. 4.1, with the radius kept in [min_radius, max_radius]."""
        o = self.options
        if rho < o.shrink_below:
            self.radius = max(o.shrink * self.radius, o.min_radius)
        elif rho > o.expand_above and on_boundary:
            self.radius = min(o.expand * self.radius, o.max_radius)

    def accepted(self, previous_loss: float) -> None:
        """Record the loss the accepted step left (for the non-monotone window)."""
        if self.options.window > 1:
            self.recent = (self.recent + [previous_loss])[-(self.options.window - 1) :]

    def state_dict(self) -> dict:
        return {"radius": self.radius, "recent": torch.tensor(self.recent, dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        self.radius = float(state["radius"])
        self.recent = [float(v) for v in torch.as_tensor(state["recent"]).tolist()]
