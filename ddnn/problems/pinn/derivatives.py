"""Input derivatives of a network for PINN residuals: Taylor-mode jets and a nested-autograd reference.

A PINN residual needs u, a few first derivatives ∂u/∂x_i and a few pure
second derivatives ∂²u/∂x_i² at every collocation point, and then the
gradient of the loss in the parameters. Nested reverse mode
(:func:`autograd_jet`) builds a graph of a graph and differentiates it a
third time. Forward (Taylor-mode) propagation (:func:`mlp_jet`) instead
pushes the truncated Taylor coefficients of ``t ↦ u(x + t e_i)`` through
the network once; the loss gradient is then ordinary first-order reverse
mode through that forward pass.

For a hidden layer ``h = σ(z)``, ``z = W a + b`` and one direction ``e_i``
with first- and second-order coefficients ``a' = ∂a/∂x_i`` and
``a'' = ∂²a/∂x_i²`` (Griewank & Walther 2008, ch. 13)::

    z   = W a + b          z'  = W a'          z''  = W a''
    h   = σ(z)             h'  = σ'(z) z'      h''  = σ'(z) z'' + σ''(z) (z')²

The value, the m first-order and the s second-order coefficients are stacked
into one ``(1 + m + s, width, N)`` tensor so that every layer costs one
(batched) matrix product; the bias enters the value only. Points run along
the last, contiguous axis: ``W @ stack`` then multiplies a small matrix
into long rows, which BLAS runs faster than the transposed layout for the
narrow (20-50) layers of PINNs.

References
----------
A. Griewank, A. Walther, *Evaluating Derivatives*, 2nd ed., SIAM 2008,
chapter 13 (Taylor and tensor coefficients).
M. Raissi, P. Perdikaris, G. E. Karniadakis, "Physics-informed neural
networks", J. Comput. Phys. 378 (2019) 686-707 (the residuals that need
these derivatives).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Jet", "mlp_jet", "autograd_jet", "supports_jet", "JET_ACTIVATIONS"]


@dataclass(frozen=True)
class Jet:
    """u and its input derivatives at N points.

    Attributes
    ----------
    u : (N,) network output
    first : input index i -> (N,) ∂u/∂x_i
    second : input index i -> (N,) ∂²u/∂x_i²
    combined : (N,) Σ_i c_i ∂²u/∂x_i² for each requested combination
    """

    u: torch.Tensor
    first: dict[int, torch.Tensor]
    second: dict[int, torch.Tensor]
    combined: tuple[torch.Tensor, ...] = ()


# ---------------------------------------------------------------------------
# Activations: forward(z, out) -> (σ, σ', σ'') with σ(z) written into out, and
# third(z, h, σ', σ'') -> σ''' for the backward pass. tanh and sigmoid need
# only the value h = σ(z):
#   tanh:    σ' = 1 − h²,    σ'' = −2hσ',       σ''' = σ'(4 − 6σ')  (= −2 + 8h² − 6h⁴)
#   sigmoid: σ' = h(1 − h),  σ'' = σ'(1 − 2h),  σ''' = σ''(1 − 2h) − 2σ'²


class _Activation:
    def forward(self, z: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """σ(z) (written into ``out``), σ'(z), σ''(z)."""
        raise NotImplementedError

    def third(self, z: torch.Tensor, h: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        """σ'''(z) given z, h = σ(z), σ'(z), σ''(z)."""
        raise NotImplementedError


class _Tanh(_Activation):
    def forward(self, z, out):
        h = torch.tanh(z, out=out)
        d1 = 1.0 - h * h
        return h, d1, (h * d1).mul_(-2.0)

    def third(self, z, h, d1, d2):
        return torch.addcmul(4.0 * d1, d1, d1, value=-6.0)


class _Sigmoid(_Activation):
    def forward(self, z, out):
        h = torch.sigmoid(z, out=out)
        d1 = h * (1.0 - h)
        return h, d1, d1 * (1.0 - 2.0 * h)

    def third(self, z, h, d1, d2):
        return d2 * (1.0 - 2.0 * h) - 2.0 * d1 * d1


class _ReLU(_Activation):
    # piecewise linear: σ'' = σ''' = 0 almost everywhere (what autograd also returns)
    def forward(self, z, out):
        return torch.clamp(z, min=0.0, out=out), (z > 0).to(z.dtype), torch.zeros_like(z)

    def third(self, z, h, d1, d2):
        return d2


class _SiLU(_Activation):
    # σ = z s(z) with s the logistic function, q = s' = s(1 − s), r = 1 − 2s:
    # σ' = s + zq, σ'' = q(2 + zr), σ''' = q[r(2 + zr) + r − 2zq]
    def forward(self, z, out):
        s = torch.sigmoid(z)
        q = s * (1.0 - s)
        return torch.mul(z, s, out=out), s + z * q, q * (2.0 + z * (1.0 - 2.0 * s))

    def third(self, z, h, d1, d2):
        s = torch.sigmoid(z)
        q = s * (1.0 - s)
        r = 1.0 - 2.0 * s
        return q * (r * (2.0 + z * r) + r - 2.0 * z * q)


_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class _GELU(_Activation):
    # exact GELU σ = zΦ(z) (nn.GELU's default), φ = Φ': σ' = Φ + zφ, σ'' = φ(2 − z²), σ''' = φz(z² − 4)
    def forward(self, z, out):
        cdf = 0.5 * (1.0 + torch.erf(z * _INV_SQRT_2))
        pdf = _INV_SQRT_2PI * torch.exp(-0.5 * z * z)
        return torch.mul(z, cdf, out=out), cdf + z * pdf, pdf * (2.0 - z * z)

    def third(self, z, h, d1, d2):
        pdf = _INV_SQRT_2PI * torch.exp(-0.5 * z * z)
        return pdf * z * (z * z - 4.0)


JET_ACTIVATIONS: dict[str, _Activation] = {
    "tanh": _Tanh(),
    "sigmoid": _Sigmoid(),
    "relu": _ReLU(),
    "silu": _SiLU(),
    "gelu": _GELU(),
}


# ---------------------------------------------------------------------------
# The fused layer


class _JetLayer(torch.autograd.Function):
    """One affine layer and activation applied to a stacked jet, with a hand-written backward.

    ``stack`` (K, w_in, N) holds the value a (row 0), the tangents a'_k
    (rows 1..m) and the second-order rows a''_j (rows m+1..m+s); second-order
    row j is the combination Σ_k C_jk ∂²a/∂x_k² of pure second derivatives
    along the tangent directions (C = ``quad``, a list of ``(k, C_jk)`` per
    row). The output holds the same rows for h = σ(W a + b). With
    z = W a + b, z_k = W a'_k, ẑ_j = W a''_j (together the rows Z_r) and G
    the incoming gradient (rows G_0, G'_k, G''_j)::

        h'_k = σ' z_k,    h''_j = σ' ẑ_j + σ'' Σ_k C_jk z_k²

        ∂/∂ẑ_j = σ' G''_j
        ∂/∂z_k = σ' G'_k + 2 σ'' z_k H_k,                H_k = Σ_j C_jk G''_j
        ∂/∂z   = σ' G_0 + σ'' Σ_{r ≥ 1} Z_r G_r + σ''' Σ_k z_k² H_k

    then ∂W = Σ_r ∂Z_r stack_rᵀ, ∂b = Σ_N ∂z, ∂stack = Wᵀ ∂Z. No intermediate
    enters the autograd graph, so the backward pass allocates no
    zero-filled slice gradients and no concatenations.
    """

    @staticmethod
    def forward(ctx, stack, weight, bias, act, m, quad):
        k = stack.shape[0]
        # (K, w_out, N): one batched product for every row (torch.matmul would transpose and copy)
        zs = torch.bmm(weight.expand(k, -1, -1), stack)
        z = zs[0]
        z.add_(bias[:, None])
        out = torch.empty_like(zs)
        h, d1, d2 = act.forward(z, out[0])
        torch.mul(zs[1:], d1, out=out[1:])
        if quad:
            squares = {}
            for j, row in enumerate(quad):
                q = None
                for r, c in row:
                    if r not in squares:
                        squares[r] = zs[1 + r].square()
                    if q is None:
                        q = squares[r] if (c == 1.0 and len(row) == 1) else squares[r] * c
                    else:
                        q.add_(squares[r], alpha=c)
                out[1 + m + j].addcmul_(q, d2)
        ctx.save_for_backward(stack, weight, zs, out, d1, d2)  # h = out[0]
        ctx.act, ctx.m, ctx.quad = act, m, quad
        return out

    @staticmethod
    def backward(ctx, grad):
        stack, weight, zs, out, d1, d2 = ctx.saved_tensors
        act, m, quad = ctx.act, ctx.m, ctx.quad
        k = zs.shape[0]
        grad = grad.contiguous()
        gz = torch.empty_like(zs)
        torch.mul(grad[1:], d1, out=gz[1:])
        # σ'' Σ_{r ≥ 1} Z_r G_r
        acc = zs[1] * grad[1]
        for r in range(2, k):
            acc.addcmul_(zs[r], grad[r])
        acc.mul_(d2)
        if quad:
            # H_k = Σ_j C_jk G''_j, then the z_k² and 2 z_k terms
            weights: dict[int, torch.Tensor] = {}
            for j, row in enumerate(quad):
                g2 = grad[1 + m + j]
                for r, c in row:
                    if r in weights:
                        weights[r] = weights[r].add(g2, alpha=c)
                    else:
                        weights[r] = g2 if c == 1.0 else g2 * c
            cubic = None
            for r, hk in weights.items():
                zh = zs[1 + r] * hk
                gz[1 + r].addcmul_(zh, d2, value=2.0)
                if cubic is None:
                    cubic = zh.mul_(zs[1 + r])
                else:
                    cubic.addcmul_(zh, zs[1 + r])
            acc.addcmul_(cubic, act.third(zs[0], out[0], d1, d2))
        torch.addcmul(acc, d1, grad[0], out=gz[0])
        g_stack = g_weight = g_bias = None
        if ctx.needs_input_grad[0]:
            g_stack = torch.bmm(weight.t().expand(k, -1, -1), gz)
        if ctx.needs_input_grad[1]:
            g_weight = torch.bmm(gz, stack.transpose(1, 2)).sum(0)
        if ctx.needs_input_grad[2]:
            g_bias = gz[0].sum(1)
        return g_stack, g_weight, g_bias, None, None, None


def _linears(model: nn.Module) -> list[nn.Linear]:
    linears = getattr(model, "linears", None)
    if linears is None or not all(isinstance(lin, nn.Linear) for lin in linears):
        raise TypeError(f"{type(model).__name__} has no 'linears' list of nn.Linear layers")
    return list(linears)


def supports_jet(model: nn.Module) -> bool:
    """Whether :func:`mlp_jet` can differentiate ``model``.

    True for :class:`ddnn.models.mlp.MLP` (not a subclass with its own
    ``forward``) with an activation in :data:`JET_ACTIVATIONS` (GELU only in
    its exact form) and one output.
    """
    from ddnn.models.mlp import MLP

    if not isinstance(model, MLP) or type(model).forward is not MLP.forward:
        return False
    if model.activation not in JET_ACTIVATIONS:
        return False
    if model.activation == "gelu" and getattr(model._act, "approximate", "none") != "none":
        return False
    return model.linears[-1].out_features == 1


def mlp_jet(
    model: nn.Module,
    x: torch.Tensor,
    first: tuple[int, ...],
    second: tuple[int, ...],
    combined: tuple[Mapping[int, float], ...] = (),
) -> Jet:
    """u, first and pure second input derivatives of an MLP by forward Taylor propagation.

    Parameters
    ----------
    model : an MLP (``model.linears`` of ``nn.Linear``, hidden activation
        ``model.activation``, linear output of size 1); see :func:`supports_jet`
    x : (N, d) input points (no gradient needed)
    first : input indices i of the wanted ∂u/∂x_i
    second : input indices i of the wanted ∂²u/∂x_i²
    combined : linear combinations ``{i: c_i}`` of pure second derivatives,
        Σ_i c_i ∂²u/∂x_i² (a Laplacian, a wave operator), each propagated as
        one row instead of one row per derivative (the "forward Laplacian"
        of Li et al. 2023)

    Returns
    -------
    Jet
        Differentiable in the parameters by ordinary first-order autograd.

    Notes
    -----
    With ``K = 1 + m + s`` stacked rows (value, m tangent directions, s
    second-order rows) a layer of width w costs one ``w × w × (K N)``
    product forward and two backward, plus a handful of elementwise passes
    (:class:`_JetLayer`). The input is the stack ``[x, e_i…, 0…]``, so the
    first layer is the same operation with ``w_in = d``.

    References
    ----------
    R. Li et al., "Forward Laplacian: a new computational framework for
    neural network-based variational Monte Carlo", arXiv:2307.08214 (2023).
    """
    if getattr(model, "activation", None) not in JET_ACTIVATIONS:
        raise ValueError(
            f"no Taylor-mode rule for activation {getattr(model, 'activation', None)!r}; "
            f"use derivatives='autograd' or one of {', '.join(JET_ACTIVATIONS)}"
        )
    act = JET_ACTIVATIONS[model.activation]
    linears = _linears(model)
    if linears[-1].out_features != 1:
        raise ValueError(f"expected one output, got {linears[-1].out_features}")
    second = tuple(dict.fromkeys(second))
    combined = tuple({int(i): float(c) for i, c in combo.items() if c != 0.0} for combo in combined)
    needed = set(first) | set(second) | {i for combo in combined for i in combo}
    # tangent directions: the second-derivative ones first, in order, then the others
    dirs = list(dict.fromkeys([*second, *sorted(needed - set(second))]))
    slot = {i: r for r, i in enumerate(dirs)}
    quad = tuple(((slot[i], 1.0),) for i in second) + tuple(
        tuple((slot[i], c) for i, c in sorted(combo.items())) for combo in combined
    )
    m, s = len(dirs), len(quad)
    n, d = x.shape
    stack = x.new_zeros(1 + m + s, d, n)
    stack[0] = x.t()
    for r, i in enumerate(dirs):
        stack[1 + r, i] = 1.0
    for lin in linears[:-1]:
        stack = _JetLayer.apply(stack, lin.weight, lin.bias, act, m, quad)
    last = linears[-1]
    out = torch.bmm(last.weight.expand(stack.shape[0], -1, -1), stack)[:, 0, :]  # (K, N)
    u = out[0] + last.bias
    return Jet(
        u,
        {i: out[1 + slot[i]] for i in first},
        {i: out[1 + m + j] for j, i in enumerate(second)},
        tuple(out[1 + m + len(second) + j] for j in range(len(combined))),
    )


def autograd_jet(
    model: nn.Module,
    x: torch.Tensor,
    first: tuple[int, ...],
    second: tuple[int, ...],
    combined: tuple[Mapping[int, float], ...] = (),
) -> Jet:
    """u, first and pure second input derivatives by nested reverse mode (the reference).

    Same arguments and result as :func:`mlp_jet`, for any scalar-output
    model: ``torch.autograd.grad`` with ``create_graph=True`` once for the
    gradient and once more per second derivative (combinations are summed
    from the pure second derivatives). Runs with gradients enabled even
    inside ``torch.no_grad()`` (input derivatives need them).
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        u = model(xg)
        if u.dim() == 2:
            if u.shape[1] != 1:
                raise ValueError(f"expected one output, got {u.shape[1]}")
            u = u[:, 0]
        pure = list(dict.fromkeys([*second, *(i for combo in combined for i in combo)]))
        grad = None
        if first or pure:
            (grad,) = torch.autograd.grad(u.sum(), xg, create_graph=True, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(xg)
        first_out = {i: grad[:, i] for i in first}
        pure_out = {}
        for i in pure:
            gi = grad[:, i]
            hess_row = None
            if gi.requires_grad:
                (hess_row,) = torch.autograd.grad(gi.sum(), xg, create_graph=True, allow_unused=True)
            pure_out[i] = hess_row[:, i] if hess_row is not None else torch.zeros_like(u)
        sums = tuple(sum((c * pure_out[i] for i, c in combo.items()), torch.zeros_like(u)) for combo in combined)
    return Jet(u, first_out, {i: pure_out[i] for i in second}, sums)
