"""Which parameters an optimiser trains, in which order, and the blocks a layer decomposition groups.

The flat buffer holds the trainable parameters (``requires_grad``) of all
param groups, ordered so that every *unit* — a layer, or a block the user
named — is one contiguous slice. The units are what
:meth:`~ddnn.optim.closure.ClosureObjective.layer_bounds` reports, so a
Schwarz preconditioner groups them into S subdomains exactly as
``python -m ddnn`` groups a network's layers.

``blocks`` (the units):

* ``None`` — several param groups: each group is one unit; else, with a
  module, its layers (as ``"layers"``); else every parameter tensor;
* ``"layers"`` — the module's parameter-owning submodules (e.g. every
  ``Linear``: weight and bias together), in parameter order: the layers of
  :func:`ddnn.flat.layer_bounds`, those ``python -m ddnn`` decomposes;
* ``"children"`` — the module's direct children that own parameters (a
  nested block of layers is one unit), and its own direct parameters;
* a list of names — one unit per entry: a submodule or parameter name of the
  module (``"encoder"``, ``"head.weight"``), or a list of such names. Every
  trainable parameter must be in exactly one unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Layout", "layout"]


@dataclass
class Layout:
    """The trainable parameters in flat order, their names, and the flat bounds of the units."""

    params: list[torch.Tensor]
    names: list[str]
    units: list[tuple[int, int]]


def _unwrap(module: nn.Module) -> nn.Module:
    """The module a ``torch.compile`` wrapper compiles (its parameter names have no ``_orig_mod.`` prefix)."""
    return getattr(module, "_orig_mod", module)


def _unique(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _bounds(units: list[list[torch.Tensor]]) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    params, bounds, offset = [], [], 0
    for unit in units:
        size = sum(p.numel() for p in unit)
        params.extend(unit)
        bounds.append((offset, offset + size))
        offset += size
    return params, bounds


def layout(groups: list[list[torch.Tensor]], module: nn.Module | None = None, blocks: Any = None) -> Layout:
    """The :class:`Layout` of the trainable tensors of ``groups`` (see the module docstring).

    Raises
    ------
    ValueError
        when ``blocks`` needs a module and there is none, names something the
        module lacks, or leaves a trainable parameter out or in two blocks.
    """
    trainable = [p for p in _unique([p for g in groups for p in g]) if p.requires_grad]
    names = {}
    if module is not None:
        for name, p in _unwrap(module).named_parameters():
            names.setdefault(id(p), name)
    for g, group in enumerate(groups):
        for i, p in enumerate(group):
            names.setdefault(id(p), f"param_groups[{g}]['params'][{i}]")
    chosen = {id(p) for p in trainable}

    if blocks is None:
        if sum(1 for g in groups if any(id(p) in chosen for p in g)) > 1:
            units = [[p for p in _unique(g) if id(p) in chosen] for g in groups]
            units = [u for u in units if u]
            taken: set[int] = set()
            for u in units:
                dup = [names[id(p)] for p in u if id(p) in taken]
                if dup:
                    raise ValueError(f"blocks: {', '.join(dup)} in two param groups")
                taken.update(id(p) for p in u)
        elif module is not None:
            return layout(groups, module, "layers")
        else:
            units = [[p] for p in trainable]
    elif isinstance(blocks, str):
        if blocks not in ("layers", "children"):
            raise ValueError(f"blocks: expected 'layers', 'children' or a list of module names, got {blocks!r}")
        if module is None:
            raise ValueError(f"blocks={blocks!r} needs the module: pass it as params or as module=")
        root = _unwrap(module)
        ordered = [p for _, p in root.named_parameters() if id(p) in chosen]
        outside = chosen - {id(p) for p in ordered}
        if outside:
            missing = [names[id(p)] for p in trainable if id(p) in outside]
            raise ValueError(f"blocks: parameters outside the module: {', '.join(missing[:5])}")
        owner: dict[int, str] = {}
        for name, p in root.named_parameters():
            if id(p) in chosen and id(p) not in owner:
                if blocks == "layers":
                    owner[id(p)] = name.rsplit(".", 1)[0] if "." in name else ""
                else:
                    owner[id(p)] = name.split(".", 1)[0] if "." in name else name
        units = []
        for p in ordered:
            if units and owner[id(units[-1][-1])] == owner[id(p)]:
                units[-1].append(p)
            else:
                units.append([p])
    else:
        if module is None:
            raise ValueError("blocks given as names need the module: pass it as params or as module=")
        root = _unwrap(module)
        units, taken = [], {}
        for entry in blocks:
            unit: list[torch.Tensor] = []
            for name in [entry] if isinstance(entry, str) else list(entry):
                try:
                    sub = root.get_submodule(name)
                    tensors = [p for p in sub.parameters()]
                except AttributeError:
                    try:
                        tensors = [root.get_parameter(name)]
                    except AttributeError:
                        raise ValueError(f"blocks: the module has no submodule or parameter {name!r}") from None
                for p in tensors:
                    if id(p) not in chosen:
                        continue
                    if id(p) in taken and taken[id(p)] is not unit:
                        raise ValueError(f"blocks: {names[id(p)]} is in two blocks")
                    taken[id(p)] = unit
                    unit.append(p)
            unit = _unique(unit)
            if not unit:
                raise ValueError(f"blocks: block {entry!r} has no trainable parameters")
            units.append(unit)
        left = [names[id(p)] for p in trainable if id(p) not in taken]
        if left:
            raise ValueError(f"blocks: trainable parameters in no block: {', '.join(left[:5])}")
    params, bounds = _bounds(units)
    return Layout(params, [names[id(p)] for p in params], bounds)
