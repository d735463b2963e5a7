"""One contiguous parameter vector behind an ``nn.Module``.

After :class:`FlatParams` takes a module, every parameter of the module is a
view into ``flat`` and every gradient a view into ``grad``. Vector algebra
on the whole network (L-BFGS two-loop, trust-region steps), restriction to a
block of layers (a slice) and communication (one allreduce) then need no
gathering copies. Autograd accumulates into an existing ``.grad`` in place,
so ``grad`` holds the gradient after ``backward()`` once it was zeroed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["FlatParams", "ParamSlice", "layer_bounds"]


@dataclass(frozen=True)
class ParamSlice:
    """Where one named parameter lives in the flat vector."""

    name: str
    start: int
    stop: int
    shape: tuple[int, ...]


class FlatParams:
    """Re-home a module's parameters into one contiguous vector.

    Parameters
    ----------
    module : the network; its parameters keep their values
    device, dtype : where and in which precision the vector lives

    Attributes
    ----------
    flat : 1-D tensor of all parameters (no autograd history)
    grad : 1-D tensor of the same size; ``p.grad`` of every parameter is a view of it
    slices : the position of every named parameter, in ``named_parameters`` order
    """

    def __init__(self, module: nn.Module, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        total = sum(p.numel() for _, p in named)
        self.module = module
        self.flat = torch.empty(total, device=device, dtype=dtype)
        self.grad = torch.zeros(total, device=device, dtype=dtype)
        slices = []
        offset = 0
        for name, p in named:
            stop = offset + p.numel()
            self.flat[offset:stop].copy_(p.detach().reshape(-1))
            slices.append(ParamSlice(name, offset, stop, tuple(p.shape)))
            offset = stop
        self.slices: tuple[ParamSlice, ...] = tuple(slices)
        self._rebind()

    def _rebind(self) -> None:
        """Point every module parameter (and its grad) into ``flat`` and ``grad``."""
        for s in self.slices:
            owner, attr = self._owner(s.name)
            param = nn.Parameter(self.flat[s.start : s.stop].view(s.shape))
            param.grad = self.grad[s.start : s.stop].view(s.shape)
            setattr(owner, attr, param)

    def _owner(self, name: str) -> tuple[nn.Module, str]:
        *path, attr = name.split(".")
        owner = self.module
        for part in path:
            owner = getattr(owner, part)
        return owner, attr

    @property
    def numel(self) -> int:
        return self.flat.numel()

    def parameters(self) -> list[nn.Parameter]:
        """The module's parameters (views of ``flat``), in flat order."""
        return [getattr(*self._owner(s.name)) for s in self.slices]

    def zero_grad(self) -> None:
        """Zero the gradient buffer and re-attach any ``.grad`` a caller replaced."""
        self.grad.zero_()
        for s, p in zip(self.slices, self.parameters()):
            if p.grad is None or p.grad.data_ptr() != self.grad[s.start :].data_ptr():
                p.grad = self.grad[s.start : s.stop].view(s.shape)

    def set_trainable(self, start: int = 0, stop: int | None = None) -> None:
        """Let autograd compute gradients only for parameters inside ``[start, stop)``.

        Parameters that straddle the bounds stay trainable (their gradient is
        computed in full; callers slice what they need).
        """
        stop = self.numel if stop is None else stop
        for s, p in zip(self.slices, self.parameters()):
            p.requires_grad_(s.stop > start and s.start < stop)

    def layer_bounds(self) -> list[tuple[int, int]]:
        """Flat ranges of the module's parameter-owning submodules, in order (see :func:`layer_bounds`)."""
        return _group_layers((s.name, s.start, s.stop) for s in self.slices)


def layer_bounds(module: nn.Module) -> list[tuple[int, int]]:
    """Flat ``(start, stop)`` of every parameter-owning submodule of ``module``, in parameter order.

    A "layer" is the set of trainable parameters directly owned by one
    submodule (e.g. weight and bias of a ``Linear``); layer decompositions
    are built from these ranges. Works on the meta device (shapes only).
    """
    named, offset = [], 0
    for name, p in module.named_parameters():
        if p.requires_grad:
            named.append((name, offset, offset + p.numel()))
            offset += p.numel()
    return _group_layers(named)


def _group_layers(slices) -> list[tuple[int, int]]:
    bounds: list[tuple[str, int, int]] = []
    for name, start, stop in slices:
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        if bounds and bounds[-1][0] == owner and bounds[-1][2] == start:
            bounds[-1] = (owner, bounds[-1][1], stop)
        else:
            bounds.append((owner, start, stop))
    return [(a, b) for _, a, b in bounds]
