"""The parameters of a library optimiser as views of one flat buffer.

:class:`FlatParamList` re-homes a list of parameter tensors: every ``p.data``
becomes a slice of one contiguous value buffer and every ``p.grad`` a slice
of one gradient buffer. The parameter objects themselves are kept, so the
model and every other reference stay valid, and ``backward()`` accumulates
∇L straight into the buffer (autograd adds into an existing ``.grad`` in
place). The solvers then work on flat vectors, as inside ``python -m ddnn``
(:class:`ddnn.flat.FlatParams` does the same for a whole module).

Anything that moves a parameter out of the buffer afterwards (``model.double()``,
``model.to(device)``, ``p.data = t``, unpickling) is detected by
:meth:`FlatParamList.intact`; the optimiser then re-homes the parameters
with their current values (see :mod:`ddnn.optim.optimizer`).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["FlatParamList"]


class FlatParamList:
    """Make a list of tensors views into one flat parameter buffer and one flat gradient buffer.

    Parameters
    ----------
    params : leaf tensors of one real floating dtype and one device (their values are kept)
    names : one name per tensor, for messages (default ``parameter i``)

    Attributes
    ----------
    flat, grad : the contiguous value and gradient buffers
    bounds : ``(start, stop)`` of every tensor in the buffers

    Raises
    ------
    ValueError
        when there is nothing to optimise, a tensor is complex or not floating
        point (naming it), or the tensors do not share one dtype and device.
    """

    def __init__(self, params: list[torch.Tensor], names: list[str] | None = None):
        if not params:
            raise ValueError("no trainable parameters to optimise")
        names = list(names) if names is not None else [f"parameter {i}" for i in range(len(params))]
        complex_ = [n for n, p in zip(names, params) if p.is_complex()]
        if complex_:
            raise ValueError(
                f"complex parameters are not supported: {', '.join(complex_)} "
                "(optimise torch.view_as_real of them, or their real and imaginary parts, instead)"
            )
        not_float = [f"{n} ({p.dtype})" for n, p in zip(names, params) if not p.is_floating_point()]
        if not_float:
            raise ValueError(f"parameters must be floating point: {', '.join(not_float)}")
        dtypes = {p.dtype for p in params}
        devices = {p.device for p in params}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ValueError(f"parameters must share one dtype and device, got {dtypes} on {devices}")
        self.params = list(params)
        self.names = names
        total = sum(p.numel() for p in params)
        self.flat = torch.empty(total, dtype=params[0].dtype, device=params[0].device)
        self.grad = torch.zeros_like(self.flat)
        self.bounds: list[tuple[int, int]] = []
        offset = 0
        with torch.no_grad():
            for p in params:
                stop = offset + p.numel()
                self.flat[offset:stop].copy_(p.detach().reshape(-1))
                self.bounds.append((offset, stop))
                offset = stop
        self._rehome()

    def _rehome(self) -> None:
        """Point every ``p.data`` and ``p.grad`` into the buffers (their values must already be there)."""
        self._views = [self.flat[a:b].view(p.shape) for p, (a, b) in zip(self.params, self.bounds)]
        self._grad_views = [self.grad[a:b].view(p.shape) for p, (a, b) in zip(self.params, self.bounds)]
        for p, v, g in zip(self.params, self._views, self._grad_views):
            p.data = v
            p.grad = g

    @property
    def numel(self) -> int:
        return self.flat.numel()

    def intact(self) -> bool:
        """Whether every parameter is still its view of the buffer (no cast, move or ``p.data =`` since)."""
        flat = self.flat
        for p, v in zip(self.params, self._views):
            if p.dtype != flat.dtype or p.device != flat.device or p.shape != v.shape:
                return False
            if v.numel() and p.data_ptr() != v.data_ptr():
                return False
        return True

    def zero_grad(self) -> None:
        """Zero the gradient buffer in place and re-attach every ``p.grad`` to it."""
        self.grad.zero_()
        for p, g in zip(self.params, self._grad_views):
            if p.grad is not g:
                p.grad = g

    def gather_grad(self) -> torch.Tensor:
        """The gradient buffer, after copying in any ``p.grad`` that autograd left outside it."""
        for p, (a, b), g in zip(self.params, self.bounds, self._grad_views):
            current = p.grad
            if current is g:  # autograd accumulated into the view, in place
                continue
            if current is None:
                self.grad[a:b].zero_()
            elif current.data_ptr() != g.data_ptr():
                self.grad[a:b].copy_(current.reshape(-1))
            p.grad = g
        return self.grad

    def set_trainable(self, start: int = 0, stop: int | None = None) -> None:
        """Let autograd compute gradients only for tensors inside ``[start, stop)`` (all of them by default).

        Tensors that straddle the bounds stay trainable; callers slice what they need.
        """
        stop = self.numel if stop is None else stop
        for p, (a, b) in zip(self.params, self.bounds):
            p.requires_grad_(b > start and a < stop)

    # -- copies ---------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"params": self.params, "names": self.names, "flat": self.flat, "grad": self.grad, "bounds": self.bounds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A copy (``copy.deepcopy``, pickle) re-homes its parameter copies into its buffer copies."""
        self.__dict__.update(state)
        with torch.no_grad():
            for p, (a, b) in zip(self.params, self.bounds):
                self.flat[a:b].copy_(p.detach().reshape(-1))
        self._rehome()
