"""Named components: problems, models, solvers, line searches, trust-region subproblem solvers.

A component is a class registered under a *kind* and a *name* together with
the frozen dataclass of its options::

    @register("solver", "lbfgs", LBFGSOptions)
    class LBFGS(Solver): ...

The YAML section ``solver: {name: lbfgs, memory: 5}`` is validated against
``LBFGSOptions`` and built with :func:`build`. ``python -m ddnn --list``
prints every registered component from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Entry", "register", "lookup", "names", "kinds", "load_builtin_components"]

KINDS = ("problem", "model", "solver", "line_search", "subproblem")


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    cls: type
    options: type  # a frozen dataclass

    @property
    def summary(self) -> str:
        """First line of the class docstring."""
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str, options: type) -> Callable[[type], type]:
    """Class decorator registering a component under ``kind`` and ``name``."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown component kind {kind!r}; known: {', '.join(KINDS)}")
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"options of {kind} {name!r} must be a dataclass")

    def decorate(cls: type) -> type:
        if name in _REGISTRY[kind] and _REGISTRY[kind][name].cls is not cls:
            raise ValueError(f"{kind} {name!r} is registered twice")
        _REGISTRY[kind][name] = Entry(kind, name, cls, options)
        cls.registered_name = name
        return cls

    return decorate


def lookup(kind: str, name: str) -> Entry:
    """The entry registered as ``name``; ``KeyError`` listing the known names otherwise."""
    load_builtin_components()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(names(kind))}") from None


def names(kind: str) -> list[str]:
    """Sorted names registered under ``kind``."""
    load_builtin_components()
    return sorted(_REGISTRY[kind])


def kinds() -> tuple[str, ...]:
    return KINDS


_loaded = False


def load_builtin_components() -> None:
    """Import the modules whose import registers ddnn's own components."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    import ddnn.models  # noqa: F401
    import ddnn.problems  # noqa: F401
    import ddnn.solvers

    for module in ddnn.solvers.MODULES:
        importlib.import_module(f"ddnn.solvers.{module}")


def build(kind: str, section: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Instantiate the component described by a validated config ``section``."""
    entry = lookup(kind, section.name)
    return entry.cls(section.options, *args, **kwargs)
