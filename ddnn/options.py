"""Declaring options: documented, range-checked fields of frozen dataclasses.

Every component (problem, model, solver, line search, ...) declares its
options as a frozen dataclass whose fields are made with :func:`option` (a
value with a default, a one-line doc and range checks) or :func:`component`
(a nested component section such as a local solver). This module only
*declares*; :mod:`ddnn.config` validates YAML against these declarations and
:mod:`ddnn.registry` finds components by name. Components import this module
and nothing of the loader, so there is no import cycle between the loader,
the registry and the components.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

__all__ = ["option", "component", "Section", "Setup", "MISSING", "describe_options", "type_name"]

MISSING = dataclasses.MISSING


def option(default: Any = MISSING, doc: str = "", **checks: Any) -> Any:
    """A documented option field.

    Parameters
    ----------
    default : the default value (omit for a required option)
    doc : one line for ``--list``
    checks : ``min``, ``max`` (inclusive), ``gt``, ``lt`` (exclusive),
        ``existing_file`` (a path that must exist), ``allow_inf`` (accept
        ±infinity for a float; refused by default)
    """
    meta = {"doc": doc, **checks}
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple, not a list, as the default of an option")
    return field(default=default, metadata=meta)


def component(
    kind: str, default: str | None = None, doc: str = "", role: str | None = None, defaults: dict | None = None
) -> Any:
    """A nested component section (e.g. a local solver) of the given kind.

    ``default`` names the component used when the key is absent (its options
    take their defaults); ``None`` means the section is optional and absent.
    ``defaults`` are option values of the ``default`` component that differ
    in this place from its own defaults (a local L-BFGS keeps 10 pairs where
    a global one keeps 3); they apply whenever the section names that
    component and leaves them out. ``role`` is a capability the chosen class
    must declare (a class attribute ``roles`` containing it), e.g. ``"npc"``
    for a nonlinear preconditioner: a composition that cannot run is refused
    at validation.
    """
    meta = {"doc": doc, "kind": kind, "default_name": default, "role": role, "defaults": dict(defaults or {})}
    return field(default=None, metadata=meta)


@dataclass(frozen=True)
class Section:
    """A validated component section: its kind, registered name and options."""

    kind: str
    name: str
    options: Any

    def __getattr__(self, item: str) -> Any:  # section.max_iter reads the option
        if item.startswith("__"):
            raise AttributeError(item)
        return getattr(object.__getattribute__(self, "options"), item)


@dataclass(frozen=True)
class Setup:
    """What an input is checked against besides itself: the job and the network it builds.

    Components check their options against it in a class method
    ``check_setup(options, setup, key)``, raising ``ConfigError`` naming ``key``.

    Attributes
    ----------
    world_size : number of ranks
    layer_bounds : flat ``(start, stop)`` of every parameter-owning layer of the network
    n_params : number of trainable parameters
    cuda : whether CUDA is available
    model : the registered name of the network (``""`` when unknown)
    """

    world_size: int = 1
    layer_bounds: tuple[tuple[int, int], ...] = ()
    n_params: int = 0
    cuda: bool = False
    model: str = ""


def type_name(tp: Any) -> str:
    """The annotation ``tp`` in words ("an integer", "one of 'a', 'b'", ...)."""
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        words = " or ".join(type_name(a) for a in args)
        return words + " or null" if type(None) in typing.get_args(tp) else words
    if origin is tuple:
        return "a list of " + _plural(type_name(typing.get_args(tp)[0]))
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    described = getattr(tp, "type_name", None)
    if isinstance(described, str):
        return described
    return str(tp)


def _plural(name: str) -> str:
    """'an integer' -> 'integers', 'a list of numbers' -> 'lists of numbers' (for list element types)."""
    if name == "true or false":
        return "booleans"
    if name.startswith("one of "):
        return "values, each " + name
    for article in ("an ", "a "):
        if name.startswith(article):
            head, sep, rest = name[len(article) :].partition(" ")
            return head + "s" + sep + rest
    return name


def describe_options(cls: type, indent: str = "  ") -> list[str]:
    """Lines documenting every option of an options dataclass (for ``--list``)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        doc = f.metadata.get("doc", "")
        if "kind" in f.metadata:
            default = f.metadata["default_name"]
            shown = f"{f.metadata['kind']} section, default {default}" if default else f"{f.metadata['kind']} section"
            if f.metadata.get("defaults"):
                shown += " with " + ", ".join(f"{k}: {v}" for k, v in f.metadata["defaults"].items())
            lines.append(f"{indent}{f.name}: <{shown}>  {doc}")
            continue
        default = f.default if f.default is not MISSING else "<required>"
        if dataclasses.is_dataclass(default) and not hasattr(default, "to_config"):
            lines.append(f"{indent}{f.name}:  {doc}")
            lines.extend(describe_options(type(default), indent + "  "))
            continue
        item = typing.get_args(hints[f.name])[0] if typing.get_origin(hints[f.name]) is tuple else None
        if item is not None and dataclasses.is_dataclass(item):  # a list of sections, e.g. levels
            lines.append(f"{indent}{f.name}: a list of mappings, each with:  {doc}")
            lines.extend(describe_options(item, indent + "  "))
            continue
        bounds = [f"{k} {f.metadata[k]}" for k in ("min", "max", "gt", "lt") if k in f.metadata]
        extra = f" [{', '.join(bounds)}]" if bounds else ""
        shown_default = str(default) if hasattr(default, "type_name") else repr(default)
        lines.append(f"{indent}{f.name}: {type_name(hints[f.name])} = {shown_default}{extra}  {doc}")
    return lines
